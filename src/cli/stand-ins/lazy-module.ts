/**
 * A module object that loads the real module on first use (a property read), not when it is required. For modules
 * read only through their named exports (`undici_1.Pool`), the way compiled TypeScript reads them.
 */
export function lazyModule(load: () => object): object {
  let real: object | undefined;
  const module = () => (real ??= load());
  return new Proxy(
    {},
    {
      get: (_target, name) => Reflect.get(module(), name),
      has: (_target, name) => Reflect.has(module(), name),
      ownKeys: () => Reflect.ownKeys(module()),
      getOwnPropertyDescriptor: (_target, name) => {
        const descriptor = Reflect.getOwnPropertyDescriptor(module(), name);
        // a proxy may not report a property of its (empty) target as non-configurable
        return descriptor && { ...descriptor, configurable: true };
      },
    },
  );
}
