-- NGTT fleet state in PostgreSQL (docs/postgres.md). Applied once, in file-name order, by
-- migrate.ts under an advisory lock; recorded in schema_migrations. Times are timestamptz
-- (device times converted from Unix ms / µs); ngtt_ms() turns one back into Unix ms.

CREATE FUNCTION ngtt_ms(t timestamptz) RETURNS double precision
  LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
  AS 'SELECT (extract(epoch FROM t) * 1000)::double precision';

-- Order states in the order they can follow one another: a merge of history events from
-- several gateways never moves an order back (queued 0, in-flight 1, settled 2).
CREATE FUNCTION ngtt_order_rank(state text) RETURNS integer
  LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
  AS $$SELECT CASE state WHEN 'queued' THEN 0 WHEN 'in-flight' THEN 1 ELSE 2 END$$;

-- Device configuration served by GET /v1/device (spec §9); a device without a row has the default.
CREATE TABLE devices (
  device_id text PRIMARY KEY,
  config jsonb NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);

-- Pathpoint declarations (PUT /v1/device/pathpoints); seq keeps the order of first declaration.
CREATE TABLE pathpoints (
  device_id text NOT NULL,
  path text NOT NULL,
  storage_level integer NOT NULL,
  seq bigserial NOT NULL,
  declared_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (device_id, path)
);

-- One row per DATA_STREAM batch stored. digest = SHA-256 of the batch's MiniJSON as the device
-- sent it: a batch sent again (its confirm was lost, or a sink died before its ack) has the same
-- digest and is not stored twice. The batch row and its values commit in one transaction.
CREATE TABLE data_batches (
  batch_id bigserial PRIMARY KEY,
  device_id text NOT NULL,
  digest bytea NOT NULL,
  received_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (device_id, digest)
);

-- One row per value. Exactly one of value / value_big / value_text is set, or error for a failed
-- read ([false, ts, code] on the wire). value_big holds integers beyond 2^53 exactly.
CREATE TABLE data (
  batch_id bigint NOT NULL REFERENCES data_batches ON DELETE CASCADE,
  series_no integer NOT NULL,
  value_no integer NOT NULL,
  device_id text NOT NULL,
  path text NOT NULL,
  ts timestamptz NOT NULL,
  value double precision,
  value_big numeric,
  value_text text,
  error text,
  PRIMARY KEY (batch_id, series_no, value_no)
);
CREATE INDEX data_device_path_ts ON data (device_id, path, ts);

-- LOGS batches, deduplicated like data batches.
CREATE TABLE log_batches (
  batch_id bigserial PRIMARY KEY,
  device_id text NOT NULL,
  digest bytea NOT NULL,
  received_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (device_id, digest)
);

-- One row per log record; ts is the record's `when` (µs). A compressed message keeps its
-- encoding ('base64-gzip') in message_encoding and its content in message.
CREATE TABLE logs (
  batch_id bigint NOT NULL REFERENCES log_batches ON DELETE CASCADE,
  record_no integer NOT NULL,
  device_id text NOT NULL,
  ts timestamptz NOT NULL,
  service text NOT NULL,
  level integer NOT NULL,
  message text NOT NULL,
  message_encoding text,
  exception_text text,
  PRIMARY KEY (batch_id, record_no)
);
CREATE INDEX logs_device_ts ON logs (device_id, ts);

-- Order history (and, for a single server without RabbitMQ, the order queue itself).
-- sections: the order's MiniJSON; sections_json: the same as JSON for queries (integers beyond
-- 2^53 as strings).
CREATE TABLE orders (
  seq bigserial UNIQUE,
  order_id text PRIMARY KEY,
  device_id text NOT NULL,
  sections bytea NOT NULL,
  sections_json jsonb,
  state text NOT NULL CHECK (state IN ('queued', 'in-flight', 'confirmed', 'rejected', 'delivered')),
  enqueued_at timestamptz NOT NULL,
  settled_at timestamptz,
  reason text,
  deliveries integer NOT NULL DEFAULT 0
);
CREATE INDEX orders_device_seq ON orders (device_id, seq);
CREATE INDEX orders_device_state_seq ON orders (device_id, state, seq);

-- POST /v1/device/orders/message/<uuid>: the first receipt of a message order.
CREATE TABLE message_receipts (
  device_id text NOT NULL,
  uuid text NOT NULL,
  received_at timestamptz NOT NULL,
  PRIMARY KEY (device_id, uuid)
);

-- BAOBs (spec §11). A deleted one stays as a tombstone (deleted, no data) to keep its version.
CREATE TABLE baobs (
  device_id text NOT NULL,
  key text NOT NULL,
  version integer NOT NULL,
  size integer NOT NULL,
  updated_at timestamptz NOT NULL,
  deleted boolean NOT NULL DEFAULT false,
  data bytea,
  PRIMARY KEY (device_id, key)
);
