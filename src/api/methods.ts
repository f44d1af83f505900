/**
 * Which methods each route takes, so a request with a known path and a
 * wrong method is a 405 naming the allowed ones (`Allow`), not a 404.
 */
export class RouteMethods {
  private readonly routes: { pattern: RegExp; methods: Set<string> }[] = [];

  add(method: string | string[], url: string): void {
    const pattern = new RegExp(
      '^' +
        url
          .split('/')
          .map((part) =>
            part === '*'
              ? '.*'
              : part.startsWith(':')
                ? '[^/]+'
                : part.replace(/[.+?^${}()|[\]\\]/g, '\\$&'),
          )
          .join('/') +
        '$',
    );
    let entry = this.routes.find((r) => r.pattern.source === pattern.source);
    if (!entry) this.routes.push((entry = { pattern, methods: new Set() }));
    for (const m of Array.isArray(method) ? method : [method]) entry.methods.add(m);
  }

  /** The methods some route with this path takes (sorted); none: no route has the path. */
  allowed(url: string): string[] {
    const path = url.split('?')[0];
    const methods = new Set<string>();
    for (const route of this.routes) {
      if (route.pattern.test(path)) for (const m of route.methods) methods.add(m);
    }
    return [...methods].sort();
  }
}
