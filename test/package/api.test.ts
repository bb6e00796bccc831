/**
 * The public API as package.json's `exports` offers it: one meaning per exported name across all
 * entries, and device-side entries whose import graph reaches no server code, no optional peer
 * and no certificate making.
 */
import { readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import t from 'tap';
import ts from 'typescript';

const ROOT = join(import.meta.dirname, '..', '..');
const manifest = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
  exports: Record<string, string | { types: string; default: string }>;
  peerDependencies: Record<string, string>;
};

/** `./dist/src/device/index.js` → `src/device/index.ts`. */
const sourceOf = (target: string) => target.replace(/^\.\/dist\//, '').replace(/\.js$/, '.ts');
const entries = Object.entries(manifest.exports)
  .filter((e): e is [string, { types: string; default: string }] => typeof e[1] === 'object')
  .map(([name, target]) => ({ name: `ngtt${name.slice(1)}`, source: sourceOf(target.default), types: target.types }));

t.test('exports: every entry has types and code from the same module of dist/', async (t) => {
  t.same(entries.map((e) => e.name).sort(), ['ngtt', 'ngtt/device', 'ngtt/live', 'ngtt/machines', 'ngtt/minijson', 'ngtt/pki', 'ngtt/protocol', 'ngtt/server', 'ngtt/server/postgres', 'ngtt/server/rabbitmq']);
  for (const e of entries) t.equal(e.types.replace(/\.d\.ts$/, '.ts'), `./dist/${e.source}`, e.name);
});

t.test('one declaration per exported name, across all entries', async (t) => {
  const program = ts.createProgram(
    entries.map((e) => join(ROOT, e.source)),
    { module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, target: ts.ScriptTarget.ES2022, strict: true, noEmit: true, skipLibCheck: true, types: ['node'] },
  );
  const checker = program.getTypeChecker();
  const declarations = new Map<string, Map<string, string[]>>(); // name → declaration → entries
  for (const e of entries) {
    const file = program.getSourceFile(join(ROOT, e.source))!;
    for (const symbol of checker.getExportsOfModule(checker.getSymbolAtLocation(file)!)) {
      const target = symbol.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(symbol) : symbol;
      const where = (target.declarations ?? []).map((d) => `${relative(ROOT, d.getSourceFile().fileName)}:${d.pos}`).sort()[0] ?? '?';
      const byName = declarations.get(symbol.name) ?? new Map<string, string[]>();
      byName.set(where, [...(byName.get(where) ?? []), e.name]);
      declarations.set(symbol.name, byName);
    }
  }
  const clashes = [...declarations].filter(([, byDecl]) => byDecl.size > 1).map(([name, byDecl]) => `${name}: ${[...byDecl].map(([d, es]) => `${d} (${es.join(', ')})`).join(' vs ')}`);
  t.same(clashes, [], 'no name stands for two different things');
  for (const name of ['openRabbitStore', 'openPostgresStore', 'supervisorMachine', 'ServerTlsOptions', 'ConnectedDeviceStatus', 'DeviceStatus', 'TlsMaterial', 'DeviceConfig']) {
    t.ok(declarations.has(name), `${name} is exported`);
  }
  t.equal(declarations.get('DeviceConfig')!.size, 1, 'the device configuration is declared once');
});

/** The module specifiers `file` imports at run time: static imports and re-exports, and `import()` calls when `dynamic`. */
function importsOf(file: string, dynamic: boolean): string[] {
  const source = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.ES2022, true);
  const found: string[] = [];
  const visit = (node: ts.Node) => {
    if ((ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
      const typeOnly = ts.isImportDeclaration(node) ? node.importClause?.isTypeOnly : node.isTypeOnly;
      if (!typeOnly) found.push(node.moduleSpecifier.text);
    } else if (dynamic && ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword && ts.isStringLiteral(node.arguments[0]!)) {
      found.push((node.arguments[0] as ts.StringLiteral).text);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

/** Every module reachable from `file` (relative imports followed, packages listed). */
function importGraph(file: string, dynamic: boolean): { files: Set<string>; packages: Set<string> } {
  const files = new Set<string>();
  const packages = new Set<string>();
  const visit = (path: string) => {
    if (files.has(path)) return;
    files.add(path);
    for (const spec of importsOf(path, dynamic)) {
      if (spec.startsWith('.')) visit(resolve(dirname(path), spec.replace(/\.js$/, '.ts')));
      else if (!spec.startsWith('node:')) packages.add(spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!);
    }
  };
  visit(file);
  return { files: new Set([...files].map((f) => relative(ROOT, f))), packages };
}

t.test('device-side entries load no server code, no optional peer, no certificate making', async (t) => {
  const peers = Object.keys(manifest.peerDependencies);
  for (const entry of ['ngtt', 'ngtt/device', 'ngtt/minijson', 'ngtt/protocol', 'ngtt/machines']) {
    const { files, packages } = importGraph(join(ROOT, entries.find((e) => e.name === entry)!.source), true);
    t.same([...files].filter((f) => f.startsWith('src/server/') || f.startsWith('src/cli/') || f.startsWith('src/live/') || f === 'src/pki/certificates.ts'), [], `${entry}: no server, CLI, live view or certificate-making module`);
    t.same([...packages].filter((p) => peers.includes(p)), [], `${entry}: no optional peer`);
  }
  const minijson = importGraph(join(ROOT, 'src/minijson/index.ts'), true);
  t.same([...minijson.packages], [], 'the codec has no dependency at all');
  // The server needs fastify statically; amqplib only behind ngtt/server/rabbitmq.
  const server = importGraph(join(ROOT, 'src/server/index.ts'), true);
  t.ok(server.packages.has('fastify'));
  t.notOk(server.packages.has('amqplib'), 'ngtt/server does not load amqplib');
  t.notOk(server.packages.has('pg'), 'ngtt/server does not load pg');
  // pg only behind ngtt/server/postgres; the RabbitMQ store takes a PostgresStore without loading pg.
  t.ok(importGraph(join(ROOT, 'src/server/postgres/index.ts'), true).packages.has('pg'));
  t.notOk(importGraph(join(ROOT, 'src/server/rabbitmq/index.ts'), true).packages.has('pg'), 'ngtt/server/rabbitmq does not load pg');
  t.notOk(server.packages.has('prom-client'), 'ngtt/server loads prom-client only when it starts (lazily)');
  // The live view needs no server code and no optional peer in its import graph (mermaid is served as a file, never imported).
  const live = importGraph(join(ROOT, 'src/live/index.ts'), true);
  t.same([...live.files].filter((f) => f.startsWith('src/server/')), [], 'ngtt/live: no server module');
  t.same([...live.packages].filter((p) => peers.includes(p)), [], 'ngtt/live: no optional peer imported');
  // The CLI's entry loads its commands lazily, so `ngtt --help` needs no peer.
  const cli = importGraph(join(ROOT, 'src/cli/main.ts'), false);
  t.same([...cli.packages], [], 'src/cli/main.ts imports no package statically');
});

t.test("the CLI's install hints match the optional peer dependencies", async (t) => {
  const { OPTIONAL_PEERS } = await import('../../src/cli/common.js');
  t.same(Object.keys(OPTIONAL_PEERS).sort(), Object.keys(manifest.peerDependencies).sort());
  for (const [name, install] of Object.entries(OPTIONAL_PEERS)) {
    const range = manifest.peerDependencies[name]!;
    t.equal(install, `${name}@${range.replace(/^\^/, '').split('.').slice(0, range.startsWith('^0.') ? 2 : 1).join('.')}`, `${name}: ${install} fits ${range}`);
  }
});
