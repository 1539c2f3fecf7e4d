import { BarChart } from '@mantine/charts';
import { Alert, Anchor, Badge, Button, Checkbox, Group, Loader, Paper, Select, Stack, Text, Textarea, TextInput, Title } from '@mantine/core';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { FormEvent, useState } from 'react';
import { Link, useNavigate } from 'react-router';
import { AnalysisConfig, AnalysisResult, apiFetch, errorText, ListPage, qs } from '../api';
import { Columns, DataTable } from '../DataTable';
import { fmtCost, fmtNum, fmtTime } from '../format';

const TYPES = ['intent', 'sentiment', 'urgency', 'custom'];

function categoriesText(c: AnalysisConfig | null): string {
  return (c?.categories ?? []).map((x) => (x.description ? `${x.name}: ${x.description}` : x.name)).join('\n');
}

function parseCategories(text: string) {
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
    .map((l) => {
      const i = l.indexOf(':');
      return i < 0 ? { name: l } : { name: l.slice(0, i).trim(), description: l.slice(i + 1).trim() || undefined };
    });
}

const configColumns: Columns<AnalysisConfig> = [
  { id: 'name', header: 'Name', cell: ({ row }) => <Text size="sm" fw={600}>{row.original.name}</Text> },
  { id: 'type', header: 'Type', cell: ({ row }) => <Badge variant="light">{row.original.analysis_type}</Badge> },
  { id: 'categories', header: 'Categories', cell: ({ row }) => <Text size="sm" truncate maw={320}>{row.original.categories.map((c) => c.name).join(', ')}</Text> },
  { id: 'model', header: 'Model', cell: ({ row }) => row.original.model },
  { id: 'updated', header: 'Updated', cell: ({ row }) => fmtTime(row.original.updated_at) },
];

const resultColumns: Columns<AnalysisResult> = [
  { id: 'time', header: 'Time', cell: ({ row }) => fmtTime(row.original.created_at) },
  { id: 'request', header: 'Exchange', cell: ({ row }) => <Anchor component={Link} to={`/requests/${row.original.request_id}`} size="sm">{row.original.request_id.slice(0, 16)}…</Anchor> },
  { id: 'type', header: 'Type', cell: ({ row }) => row.original.analysis_type },
  { id: 'category', header: 'Category', cell: ({ row }) => <Text size="sm" fw={600}>{row.original.primary_category}</Text> },
  { id: 'confidence', header: 'Confidence', cell: ({ row }) => row.original.confidence.toFixed(2) },
  { id: 'cost', header: 'Cost', cell: ({ row }) => (row.original.cached ? 'cached' : fmtCost(row.original.cost)) },
];

export function AnalysisView() {
  const client = useQueryClient();
  const navigate = useNavigate();
  const configs = useQuery({ queryKey: ['analysis-configs'], queryFn: () => apiFetch<ListPage<AnalysisConfig>>('/v1/analysis/configs?limit=100') });
  const [editing, setEditing] = useState<AnalysisConfig | 'new' | null>(null);
  const [filter, setFilter] = useState<string | null>(null);
  const results = useQuery({
    queryKey: ['analysis-results', 'all', filter],
    queryFn: () => apiFetch<ListPage<AnalysisResult>>(`/v1/analysis/results${qs({ config_id: filter, limit: 100 })}`),
  });
  const counts = new Map<string, number>();
  for (const r of results.data?.data ?? []) counts.set(r.primary_category, (counts.get(r.primary_category) ?? 0) + 1);
  const distribution = [...counts.entries()].sort((a, b) => b[1] - a[1]).map(([category, count]) => ({ category, count }));

  return (
    <Stack>
      <Group justify="space-between">
        <Title order={2}>Analysis</Title>
        <Button size="xs" onClick={() => setEditing('new')}>
          New configuration
        </Button>
      </Group>
      {editing && (
        <ConfigForm
          config={editing === 'new' ? null : editing}
          onDone={() => {
            setEditing(null);
            void client.invalidateQueries({ queryKey: ['analysis-configs'] });
          }}
        />
      )}
      {configs.error && <Alert color="red">{errorText(configs.error)}</Alert>}
      {configs.isPending && <Loader />}
      {configs.data && configs.data.data.length === 0 && (
        <Alert color="blue" title="No analysis configuration yet">
          A configuration names the categories a conversation is sorted into (an intent classifier, sentiment, urgency…). Create one, then
          open an exchange and run it from its Analysis tab (or POST /v1/analysis).
        </Alert>
      )}
      {configs.data && configs.data.data.length > 0 && (
        <DataTable label="Analysis configurations" columns={configColumns} data={configs.data.data} rowId={(c) => c.id} onOpen={(c) => setEditing(c)} />
      )}
      <Title order={3}>Results</Title>
      <Select
        label="Configuration"
        placeholder="All results"
        clearable
        value={filter}
        onChange={setFilter}
        data={(configs.data?.data ?? []).map((c) => ({ value: c.id, label: c.name }))}
        maw={360}
      />
      {results.error && <Alert color="red">{errorText(results.error)}</Alert>}
      <Stack>
        <Paper withBorder p="sm" data-testid="chart-category-distribution">
          <Text fw={600} size="sm" mb="xs">
            Category distribution (latest {results.data?.data.length ?? 0} results)
          </Text>
          {distribution.length ? (
            <BarChart h={240} data={distribution} dataKey="category" series={[{ name: 'count', color: 'cyan.6' }]} withBarValueLabel valueFormatter={fmtNum} barChartProps={{ margin: { top: 20 } }} />
          ) : (
            <Text size="sm" c="dimmed">
              No results yet.
            </Text>
          )}
        </Paper>
        {results.data && results.data.data.length > 0 && (
          <DataTable label="Analysis results" columns={resultColumns} data={results.data.data} rowId={(r) => r.id} onOpen={(r) => navigate(`/requests/${r.request_id}`)} />
        )}
      </Stack>
    </Stack>
  );
}

function ConfigForm({ config, onDone }: { config: AnalysisConfig | null; onDone: () => void }) {
  const [type, setType] = useState(config?.analysis_type ?? 'intent');
  const save = useMutation({
    mutationFn: (body: Record<string, unknown>) =>
      config ? apiFetch(`/v1/analysis/configs/${config.id}`, { method: 'PATCH', body }) : apiFetch('/v1/analysis/configs', { method: 'POST', body }),
    onSuccess: onDone,
  });
  function submit(e: FormEvent<HTMLFormElement>) {
    e.preventDefault();
    const f = new FormData(e.currentTarget);
    const categories = parseCategories(String(f.get('categories') ?? ''));
    const instructions = String(f.get('instructions') ?? '').trim();
    const model = String(f.get('model') ?? '').trim();
    const body: Record<string, unknown> = {
      name: String(f.get('name') ?? '').trim(),
      ...(config ? {} : { analysis_type: type }),
      ...(categories.length ? { categories } : {}),
      ...(instructions ? { instructions } : config ? { instructions: null } : {}),
      ...(model ? { model } : {}),
      include_metadata: f.get('include_metadata') === 'on',
    };
    save.mutate(body);
  }
  return (
    <Paper withBorder p="sm">
      <form onSubmit={submit} aria-label={config ? 'Edit analysis configuration' : 'New analysis configuration'}>
        <Stack gap="xs">
          <Text fw={600}>{config ? `Edit ${config.name}` : 'New configuration'}</Text>
          <TextInput name="name" label="Name" defaultValue={config?.name ?? ''} required />
          <Select label="Type" data={TYPES} value={type} onChange={(v) => v && setType(v)} disabled={!!config} allowDeselect={false} />
          <Textarea
            name="categories"
            label="Categories, one a line (name: description)"
            description={type === 'sentiment' || type === 'urgency' ? 'Leave empty for the defaults' : 'Required for intent and custom'}
            defaultValue={categoriesText(config)}
            autosize
            minRows={3}
          />
          <Textarea name="instructions" label="Instructions (optional)" defaultValue={config?.instructions ?? ''} autosize minRows={2} />
          <TextInput name="model" label="Model" placeholder="gpt-4o-mini" defaultValue={config?.model ?? ''} />
          <Checkbox name="include_metadata" label="Include metadata (sentiment, urgency, topics)" defaultChecked={config?.include_metadata ?? false} />
          {save.error && (
            <Alert color="red" role="alert">
              {errorText(save.error)}
            </Alert>
          )}
          <Group>
            <Button type="submit" loading={save.isPending}>
              Save
            </Button>
            <Button variant="default" onClick={onDone}>
              Cancel
            </Button>
          </Group>
        </Stack>
      </form>
    </Paper>
  );
}
