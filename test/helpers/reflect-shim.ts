/**
 * @peculiar/x509 pulls in tsyringe, which demands a Reflect metadata polyfill at load time
 * (normally the `reflect-metadata` package, not a dependency here). tsyringe only stores and
 * reads metadata per target; this covers exactly those three calls. Import it before x509.
 */
type Target = object;
const store = new WeakMap<Target, Map<unknown, unknown>>();
const reflect = Reflect as unknown as Record<string, unknown>;

if (typeof reflect.getMetadata !== 'function') {
  const own = (key: unknown, target: Target) => store.get(target)?.get(key);
  reflect.defineMetadata = (key: unknown, value: unknown, target: Target) => {
    let map = store.get(target);
    if (!map) store.set(target, (map = new Map()));
    map.set(key, value);
  };
  reflect.getOwnMetadata = own;
  reflect.getMetadata = (key: unknown, target: Target): unknown => {
    for (let t: Target | null = target; t; t = Object.getPrototypeOf(t)) {
      const value = own(key, t);
      if (value !== undefined) return value;
    }
    return undefined;
  };
}
