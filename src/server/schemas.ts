/**
 * JSON schemas of the HTTP APIs' inputs (params, query strings, bodies), checked by Fastify
 * before a handler runs: a bad request is a 400 whose `status` names the field and what it
 * must be. Bodies checked in depth by the protocol's parsers (pathpoint data, logs, order
 * sections) get their outer shape here and keep their parser, whose messages point into the
 * payload. No type coercion and no silent removal of unknown fields: what is not as described
 * is refused, never reinterpreted.
 */
import type { FastifySchemaValidationError, FastifyServerOptions } from 'fastify';
import { MAX_BAOB_KEY_BYTES } from '../protocol/index.js';
import { ORDER_STATES } from './store/index.js';

/** Fastify options for both APIs: strict validation, and readable messages. */
export function validationOptions(): Pick<FastifyServerOptions, 'ajv' | 'schemaErrorFormatter' | 'routerOptions'> {
  return {
    // The router's own limit (100) would refuse valid BAOB keys (255 bytes, URL-encoded up to 765
    // characters) before the schema could say what is wrong.
    routerOptions: { maxParamLength: 4096 },
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, verbose: true } },
    schemaErrorFormatter: describeValidationErrors,
  };
}

/** `body.facets must be a list of strings`, `querystring.limit must be a positive integer`. */
export function describeValidationErrors(errors: FastifySchemaValidationError[], dataVar: string): Error {
  const e = errors[0];
  const where = dataVar + (e.instancePath ?? '').replace(/\/([^/]*)/g, (_, part: string) => (/^\d+$/.test(part) ? `[${part}]` : `.${part}`));
  const params = e.params as { additionalProperty?: string; missingProperty?: string };
  if (e.keyword === 'additionalProperties') return new Error(`${where} has an unknown field ${JSON.stringify(params.additionalProperty)}`);
  if (e.keyword === 'required') return new Error(`${where} needs the field ${JSON.stringify(params.missingProperty)}`);
  const description = (e as { parentSchema?: { description?: string } }).parentSchema?.description;
  return new Error(`${where} ${description ? `must be ${description}` : e.message}`);
}

const object = (properties: Record<string, object>, required: string[] = [], extra: object = {}) => ({ type: 'object', properties, required, ...extra });

const deviceId = { type: 'string', minLength: 1, maxLength: 1024, description: 'a device id (1 to 1024 characters)' };
const baobKey = { type: 'string', minLength: 1, maxLength: MAX_BAOB_KEY_BYTES, description: `a BAOB key (1 to ${MAX_BAOB_KEY_BYTES} bytes)` };
const limit = { type: 'string', pattern: '^[1-9][0-9]{0,8}$', description: 'a positive integer' };
/** Lists of objects whose fields the protocol parser checks (with paths into the payload). */
const listOfObjects = (what: string) => ({ type: 'array', items: { type: 'object' }, description: `a list of ${what}` });

export const deviceParams = object({ deviceId }, ['deviceId']);
export const baobParams = object({ deviceId, key: baobKey }, ['deviceId', 'key']);
export const deviceBaobParams = object({ key: baobKey }, ['key']);
export const orderParams = object({ orderId: { type: 'string', minLength: 1, maxLength: 200, description: 'an order id' } }, ['orderId']);
export const messageParams = object({ uuid: { type: 'string', minLength: 1, maxLength: 200, description: 'a message uuid (1 to 200 characters)' } }, ['uuid']);

export const limitQuery = object({ limit });
export const ordersQuery = object({ limit, state: { type: 'string', enum: ORDER_STATES, description: `one of ${ORDER_STATES.join(', ')}` } });
export const dataQuery = object({ limit, path: { type: 'string', minLength: 1, description: 'a pathpoint path' } });

/** The operator's change of a device's configuration (GET /v1/device serves it to the device). */
export const configPatch = object(
  {
    verbose_name: { type: 'string', description: 'a string' },
    facets: { type: 'array', items: { type: 'string' }, description: 'a list of strings' },
    culture_context: object(
      {
        language: { type: 'string', description: 'a string' },
        timezone: { type: 'string', description: 'a string' },
        units: { type: 'string', description: 'a string' },
      },
      [],
      { additionalProperties: false, description: 'an object {language?, timezone?, units?}' },
    ),
    slave_devices: { type: 'array', description: 'a list' },
  },
  [],
  { additionalProperties: false, description: 'an object with configuration fields (verbose_name, facets, culture_context, slave_devices)' },
);

export const pathpointDeclarations = {
  type: 'array',
  items: object(
    {
      path: { type: 'string', minLength: 1, description: 'a non-empty string' },
      storage_level: { type: 'integer', description: 'an integer' },
    },
    ['path', 'storage_level'],
  ),
  description: 'a list of {path, storage_level}',
};

export const orderSections = listOfObjects('sections {orders, disposition}');
export const pathpointData = listOfObjects('{path, values}');
export const logRecords = listOfObjects('log records {service, when, message, level}');
/** The deployed client may send no body (no BAOBs held). */
export const baobVersions = { type: ['array', 'null'], items: { type: 'object' }, description: 'a list of {key, version}' };
