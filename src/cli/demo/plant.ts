/**
 * A simulated plant behind one demo device: a handful of pathpoints whose values change over
 * time, read and written by the device's order handlers. Names follow the pathpoint type
 * convention (first letter): W unsigned 16-bit, w signed 16-bit, f float, d double, u string.
 */
import type { PathpointScalar } from '../../protocol/index.js';

export interface Reading {
  path: string;
  value: PathpointScalar;
  timestamp: number;
}

export class Plant {
  private readonly values = new Map<string, PathpointScalar>();
  private readonly phase: number;
  /** Sysctl operations the plant was told to perform, for the display. */
  lastSysctl: string | undefined;

  constructor(readonly deviceIndex: number) {
    this.phase = deviceIndex * 1.3;
    this.values.set('W1', 1200); // pump speed set point, rpm
    this.values.set('u5', 'running');
    this.sample(Date.now()); // so that a read before the first tick finds every pathpoint
  }

  /** The values sampled now: temperature, pressure and level drift; set points stay. */
  sample(now: number): Reading[] {
    const t = now / 1000 + this.phase;
    const temperature = Math.round((21 + 4 * Math.sin(t / 20) + Math.random() * 0.2) * 100) / 100;
    const pressure = 1013.25 + 12 * Math.sin(t / 45) + Math.random();
    const level = Math.round(200 * Math.sin(t / 10));
    this.values.set('f2', temperature);
    this.values.set('d3', pressure);
    this.values.set('w4', level);
    return ['W1', 'f2', 'd3', 'w4', 'u5'].map((path) => ({ path, value: this.values.get(path)!, timestamp: now }));
  }

  read(path: string): PathpointScalar {
    const value = this.values.get(path);
    if (value === undefined) throw new Error(`no pathpoint ${path}`);
    return value;
  }

  write(path: string, value: PathpointScalar): void {
    if (!this.values.has(path)) throw new Error(`no pathpoint ${path}`);
    this.values.set(path, value);
  }

  sysctl(opType: string): void {
    this.lastSysctl = opType;
    if (opType === 'reboot') this.values.set('u5', 'rebooted');
  }
}
