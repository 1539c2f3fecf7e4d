import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = process.cwd();
const read = (file: string) => readFileSync(join(ROOT, file), 'utf8');
const COMPOSE_FILES = ['docker-compose.yml', 'deploy/docker-compose.scale.yml', 'deploy/docker-compose.observability.yml'];

/** Variables a compose file interpolates, with how: `${X}`, `${X:-default}`, `${X:?message}`. */
function interpolations(text: string): { name: string; op: string }[] {
  return [...text.matchAll(/\$\{([A-Z0-9_]+)(:?[-?])?[^}]*\}/g)].map((m) => ({ name: m[1], op: m[2] ?? '' }));
}

/** The first docker compose the machine has: the plugin, else the standalone docker-compose. */
function composeCommand(): string[] | undefined {
  for (const cmd of [['docker', 'compose'], ['docker-compose']]) {
    if (spawnSync(cmd[0], [...cmd.slice(1), 'version'], { stdio: 'ignore' }).status === 0) return cmd;
  }
  return undefined;
}

describe('Docker and deployment files', () => {
  it('no compose command fails for an unset variable: secrets are checked by the server, with a one-line reason', () => {
    for (const file of COMPOSE_FILES) {
      expect(interpolations(read(file)).filter((v) => v.op.endsWith('?')), file).toEqual([]);
    }
    const compose = composeCommand();
    if (!compose) return;
    const env = { ...process.env };
    delete env.JWT_SECRET;
    delete env.ENCRYPTION_KEY;
    const run = spawnSync(compose[0], [...compose.slice(1), '-f', 'docker-compose.yml', 'config', '--quiet'], { cwd: ROOT, env, encoding: 'utf8' });
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
  });

  it('.env.example names every variable the compose files read', () => {
    const example = new Set([...read('.env.example').matchAll(/^([A-Z0-9_]+)=/gm)].map((m) => m[1]));
    const used = new Set(COMPOSE_FILES.flatMap((f) => interpolations(read(f)).map((v) => v.name)));
    expect([...used].filter((name) => !example.has(name))).toEqual([]);
    // and gives no secret
    expect(read('.env.example')).toMatch(/^JWT_SECRET=$/m);
    expect(read('.env.example')).toMatch(/^ENCRYPTION_KEY=$/m);
  });

  it("the runtime image copies the server and CLI only, not the tests' fake upstream", () => {
    const dockerfile = read('Dockerfile');
    const runtime = dockerfile.slice(dockerfile.indexOf(' AS runtime'));
    const copies = runtime.split('\n').filter((l) => /^COPY /.test(l));
    expect(copies.length).toBeGreaterThan(0);
    for (const line of copies) expect(line).not.toMatch(/\btest\b|--from=build \/app\/dist \.\/dist$/);
    expect(copies).toContain('COPY --from=build /app/dist/src ./dist/src');
  });

  it('one way to run the admin CLI in the image, the same in every document', () => {
    const docs = ['README.md', 'examples/README.md', 'deploy/README.md', 'docker-compose.yml', ...COMPOSE_FILES, 'deploy/k8s/migrate-job.yaml'];
    for (const doc of docs) {
      const text = read(doc);
      expect(text, doc).not.toMatch(/node dist\/src\/cli\.js|run --rm \w+ node /);
      for (const line of text.split('\n').filter((l) => /docker compose .*\b(exec|run) /.test(l) && !/run --rm migrate\b/.test(l))) {
        expect(line, doc).toMatch(/exec api openai-proxy /);
      }
    }
    expect(read('Dockerfile')).toMatch(/ln -s \/app\/bin\/openai-proxy\.js \/usr\/local\/bin\/openai-proxy/);
  });

  it('the Grafana dashboard asks for its Prometheus data source instead of a fixed uid', () => {
    const dashboard = JSON.parse(read('deploy/grafana/proxy-dashboard.json'));
    expect(dashboard.__inputs).toEqual([expect.objectContaining({ name: 'DS_PROMETHEUS', type: 'datasource', pluginId: 'prometheus' })]);
    // provisioned (no import dialog), the same name resolves through a data-source variable
    expect(dashboard.templating.list).toContainEqual(expect.objectContaining({ name: 'DS_PROMETHEUS', type: 'datasource', query: 'prometheus' }));
    const uids = new Set<string>();
    const walk = (node: unknown): void => {
      if (Array.isArray(node)) node.forEach(walk);
      else if (node && typeof node === 'object') {
        const o = node as Record<string, unknown>;
        if (o.type === 'prometheus' && typeof o.uid === 'string') uids.add(o.uid);
        Object.values(o).forEach(walk);
      }
    };
    walk(dashboard.panels);
    expect([...uids]).toEqual(['${DS_PROMETHEUS}']);
  });
});
