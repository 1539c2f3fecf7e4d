import { BarChart } from '@mantine/charts';
import { Alert, Anchor, Badge, Button, Group, Loader, Paper, SegmentedControl, Select, SimpleGrid, Stack, Tabs, Text, Textarea, TextInput, Title } from '@mantine/core';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { diffLines } from 'diff';
import { FormEvent, useMemo, useState } from 'react';
import { Link, useParams, useSearchParams } from 'react-router';
import { apiFetch, errorText, ListPage, Persona, PersonaAnalytics, PersonaVersion, qs } from '../api';
import { daysAgo, fmtCost, fmtInt, fmtMs, fmtNum, fmtRating, fmtTime } from '../format';

export function PersonaView() {
  const { id = '' } = useParams();
  const [params, setParams] = useSearchParams();
  const tab = params.get('tab') ?? 'analytics';
  const q = useQuery({ queryKey: ['persona', id], queryFn: () => apiFetch<Persona>(`/v1/personas/${encodeURIComponent(id)}`) });
  if (q.isPending) return <Loader />;
  if (q.error) return <Alert color="red">{errorText(q.error)}</Alert>;
  const p = q.data;
  return (
    <Stack>
      <Group justify="space-between">
        <Group gap="xs">
          <Title order={2}>{p.name}</Title>
          <Badge variant="light">version {p.version}</Badge>
        </Group>
        <Group gap="md">
          <Anchor component={Link} to={`/requests?persona_id=${p.id}`} size="sm">
            its exchanges
          </Anchor>
          <Anchor component={Link} to="/personas" size="sm">
            ← all personas
          </Anchor>
        </Group>
      </Group>
      {p.description && <Text c="dimmed">{p.description}</Text>}
      <Tabs value={tab} onChange={(v) => setParams(v ? { tab: v } : {})} keepMounted={false}>
        <Tabs.List>
          <Tabs.Tab value="analytics">Analytics</Tabs.Tab>
          <Tabs.Tab value="editor">Editor</Tabs.Tab>
          <Tabs.Tab value="versions">Versions</Tabs.Tab>
        </Tabs.List>
        <Tabs.Panel value="analytics" pt="sm">
          <Analytics id={p.id} />
        </Tabs.Panel>
        <Tabs.Panel value="editor" pt="sm">
          <Editor persona={p} />
        </Tabs.Panel>
        <Tabs.Panel value="versions" pt="sm">
          <Versions id={p.id} current={p.version} />
        </Tabs.Panel>
      </Tabs>
    </Stack>
  );
}

function Editor({ persona }: { persona: Persona }) {
  const client = useQueryClient();
  const save = useMutation({
    mutationFn: (body: Partial<Persona>) => apiFetch<Persona>(`/v1/personas/${persona.id}`, { method: 'PATCH', body }),
    onSuccess: (p) => {
      client.setQueryData(['persona', p.id], p);
      void client.invalidateQueries({ queryKey: ['personas'] });
      void client.invalidateQueries({ queryKey: ['persona-versions', p.id] });
    },
  });
  function submit(e: FormEvent<HTMLFormElement>) {
    e.preventDefault();
    const f = new FormData(e.currentTarget);
    const body: Partial<Persona> = {};
    const name = String(f.get('name') ?? '').trim();
    const description = String(f.get('description') ?? '');
    const content = String(f.get('content') ?? '');
    if (name !== persona.name) body.name = name;
    if (description !== (persona.description ?? '')) body.description = description;
    if (content !== persona.content) body.content = content;
    save.mutate(body);
  }
  return (
    <form onSubmit={submit} aria-label="Edit persona" key={`${persona.id}:${persona.version}:${persona.updated_at}`}>
      <Stack gap="xs">
        <TextInput name="name" label="Name" defaultValue={persona.name} required maxLength={100} />
        <TextInput name="description" label="Description" defaultValue={persona.description ?? ''} />
        <Textarea name="content" label="Content" defaultValue={persona.content} autosize minRows={6} styles={{ input: { fontFamily: "var(--mantine-font-family-monospace)" } }} required />
        <Text size="xs" c="dimmed">
          Changing the content makes a new version; the exchanges of earlier versions keep theirs.
        </Text>
        {save.error && (
          <Alert color="red" role="alert" title="Not saved">
            {errorText(save.error)}
          </Alert>
        )}
        {save.isSuccess && <Alert color="green">Saved: version {save.data.version}.</Alert>}
        <Group>
          <Button type="submit" loading={save.isPending}>
            Save
          </Button>
        </Group>
      </Stack>
    </form>
  );
}

async function allVersions(id: string): Promise<PersonaVersion[]> {
  const out: PersonaVersion[] = [];
  let after: string | undefined;
  for (;;) {
    const page = await apiFetch<ListPage<PersonaVersion & { id: string }>>(`/v1/personas/${id}/versions${qs({ limit: 100, after })}`);
    out.push(...page.data);
    if (!page.has_more || !page.last_id) return out;
    after = page.last_id;
  }
}

function Versions({ id, current }: { id: string; current: number }) {
  const q = useQuery({ queryKey: ['persona-versions', id, current], queryFn: () => allVersions(id) });
  const [a, setA] = useState<string | null>(null);
  const [b, setB] = useState<string | null>(null);
  const versions = q.data ?? [];
  const left = versions.find((v) => String(v.version) === (a ?? String(Math.max(1, current - 1))));
  const right = versions.find((v) => String(v.version) === (b ?? String(current)));
  const parts = useMemo(() => (left && right ? diffLines(left.content, right.content) : []), [left, right]);
  if (q.isPending) return <Loader />;
  if (q.error) return <Alert color="red">{errorText(q.error)}</Alert>;
  const options = versions.map((v) => ({ value: String(v.version), label: `v${v.version} · ${fmtTime(v.created_at)}` }));
  return (
    <Stack>
      <Group>
        <Select label="From version" data={options} value={left ? String(left.version) : null} onChange={setA} allowDeselect={false} />
        <Select label="To version" data={options} value={right ? String(right.version) : null} onChange={setB} allowDeselect={false} />
      </Group>
      <Paper withBorder p="xs" data-testid="persona-diff">
        {left && right && left.version === right.version && <Text size="sm" c="dimmed">Pick two different versions.</Text>}
        {parts.map((part, i) => (
          <div key={i} className={`diff-line ${part.added ? 'diff-add' : part.removed ? 'diff-del' : ''}`}>
            {part.value
              .replace(/\n$/, '')
              .split('\n')
              .map((line) => `${part.added ? '+ ' : part.removed ? '- ' : '  '}${line}`)
              .join('\n')}
          </div>
        ))}
      </Paper>
    </Stack>
  );
}

const VERSION_COLORS = ['gray.5', 'cyan.6', 'violet.6', 'teal.6', 'orange.6', 'pink.6'];

const PERIODS = [
  { value: '7', label: '7 days' },
  { value: '30', label: '30 days' },
  { value: '90', label: '90 days' },
];

export function Stat({ label, value }: { label: string; value: string }) {
  return (
    <Paper withBorder p="xs">
      <Text size="xs" c="dimmed">
        {label}
      </Text>
      <Text fw={700} data-stat={label}>
        {value}
      </Text>
    </Paper>
  );
}

function ChartCard({ title, children, testId }: { title: string; children: React.ReactNode; testId: string }) {
  return (
    <Paper withBorder p="sm" data-testid={testId}>
      <Text fw={600} size="sm" mb="xs">
        {title}
      </Text>
      {children}
    </Paper>
  );
}

function Analytics({ id }: { id: string }) {
  const [days, setDays] = useState('30');
  // 30 days is the API's own default period: asked without `from`, so the page and a bare API call agree
  const from = days === '30' ? undefined : daysAgo(Number(days)).toISOString();
  const q = useQuery({ queryKey: ['persona-analytics', id, days], queryFn: () => apiFetch<PersonaAnalytics>(`/v1/analytics/personas/${id}${qs({ from })}`) });
  if (q.isPending) return <Loader />;
  if (q.error) return <Alert color="red">{errorText(q.error)}</Alert>;
  const a = q.data;
  const distribution = ['1', '2', '3', '4', '5'].map((k) => ({ rating: `${k}★`, count: a.ratings.distribution[k] ?? 0 }));
  // a version nobody rated has no bar (not a zero)
  const byVersion = a.by_version.map((v) => ({ version: `v${v.version}`, requests: v.requests, average_rating: v.average_rating, cost: v.cost }));
  const daily = a.daily.map((d) => ({ date: d.date, requests: d.requests, cost: d.cost, average_rating: d.average_rating }));
  const analysis = Object.entries(a.analysis);
  return (
    <Stack>
      <Group justify="space-between">
        <Text size="sm" c="dimmed">
          {fmtTime(a.period.from)} – {fmtTime(a.period.to)}
        </Text>
        <SegmentedControl size="xs" data={PERIODS} value={days} onChange={setDays} />
      </Group>
      <SimpleGrid cols={{ base: 2, sm: 4, lg: 8 }} data-testid="persona-stats">
        <Stat label="Requests" value={fmtInt(a.requests)} />
        <Stat label="Users" value={fmtInt(a.users)} />
        <Stat label="Sessions" value={fmtInt(a.sessions)} />
        <Stat label="Errors" value={fmtInt(a.errors)} />
        <Stat label="Tokens" value={fmtInt(a.tokens.total)} />
        <Stat label="Cost" value={fmtCost(a.cost)} />
        <Stat label="Latency p50" value={fmtMs(a.latency_ms.p50)} />
        <Stat label="Latency p95" value={fmtMs(a.latency_ms.p95)} />
        <Stat label="Ratings" value={fmtInt(a.ratings.count)} />
        <Stat label="Average rating" value={fmtRating(a.ratings.average)} />
      </SimpleGrid>
      {a.requests === 0 && (
        <Alert color="blue" title="No exchanges in this period">
          Send <code>"persona_id": "{a.persona_id}"</code> in a /v1/responses or /v1/chat/completions body; its calls, ratings and analyses show here.
        </Alert>
      )}
      <SimpleGrid cols={{ base: 1, md: 2 }}>
        <ChartCard title="Requests per day" testId="chart-daily-requests">
          <BarChart h={220} data={daily} dataKey="date" series={[{ name: 'requests', color: 'blue.6' }]} withBarValueLabel valueFormatter={fmtNum} barChartProps={{ margin: { top: 20 } }} />
        </ChartCard>
        <ChartCard title="Cost per day (USD)" testId="chart-daily-cost">
          <BarChart h={220} data={daily} dataKey="date" series={[{ name: 'cost', color: 'teal.6' }]} valueFormatter={(v) => fmtCost(v)} />
        </ChartCard>
        <ChartCard title="Average rating per version" testId="chart-version-rating">
          <BarChart h={220} data={byVersion} dataKey="version" series={[{ name: 'average_rating', label: 'average rating', color: 'yellow.6' }]} withBarValueLabel valueFormatter={fmtNum} barChartProps={{ margin: { top: 20 } }} yAxisProps={{ domain: [0, 5] }} />
        </ChartCard>
        <ChartCard title="Requests per version" testId="chart-version-requests">
          <BarChart h={220} data={byVersion} dataKey="version" series={[{ name: 'requests', color: 'indigo.6' }]} withBarValueLabel valueFormatter={fmtNum} barChartProps={{ margin: { top: 20 } }} />
        </ChartCard>
        <ChartCard title="Rating distribution" testId="chart-rating-distribution">
          <BarChart h={220} data={distribution} dataKey="rating" series={[{ name: 'count', color: 'orange.6' }]} withBarValueLabel valueFormatter={fmtNum} barChartProps={{ margin: { top: 20 } }} />
        </ChartCard>
        <ChartCard title="Latency (ms)" testId="chart-latency">
          <BarChart
            h={220}
            data={[
              { stat: 'avg', ms: Math.round(a.latency_ms.avg ?? 0) },
              { stat: 'p50', ms: Math.round(a.latency_ms.p50 ?? 0) },
              { stat: 'p95', ms: Math.round(a.latency_ms.p95 ?? 0) },
            ]}
            dataKey="stat"
            series={[{ name: 'ms', color: 'grape.6' }]}
            withBarValueLabel valueFormatter={fmtNum} barChartProps={{ margin: { top: 20 } }}
          />
        </ChartCard>
        {analysis.map(([type, cats]) => {
          // one group of bars per category, one bar per version: is version 7 sorted differently from version 6?
          const versions = a.by_version.filter((v) => v.analysis?.[type]);
          const data = Object.keys(cats).map((category) => Object.fromEntries([['category', category], ...versions.map((v) => [`v${v.version}`, v.analysis![type][category] ?? 0])]));
          return (
            <ChartCard key={type} title={`Analysis categories per version: ${type}`} testId={`chart-analysis-${type}`}>
              <BarChart
                h={220}
                data={data}
                dataKey="category"
                series={versions.map((v, i) => ({ name: `v${v.version}`, color: VERSION_COLORS[i % VERSION_COLORS.length] }))}
                withLegend
                withBarValueLabel
                valueFormatter={fmtNum}
                barChartProps={{ margin: { top: 20 } }}
              />
            </ChartCard>
          );
        })}
      </SimpleGrid>
    </Stack>
  );
}
