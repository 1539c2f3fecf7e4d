import { Alert, Anchor, Badge, Button, Code, Collapse, Group, Loader, Paper, Select, SimpleGrid, Stack, Text, TextInput, Title } from '@mantine/core';
import { useMediaQuery } from '@mantine/hooks';
import { useInfiniteQuery, useQuery } from '@tanstack/react-query';
import { FormEvent, useMemo, useState } from 'react';
import { Link, useNavigate, useSearchParams } from 'react-router';
import { apiFetch, errorText, Exchange, ListPage, loadCredentials, Persona, qs } from '../api';
import { Columns, DataTable } from '../DataTable';
import { fmtCost, fmtInt, fmtMs, fmtRating, fmtTime } from '../format';

/** The filters GET /v1/requests takes, kept in the console's URL so a view can be shared. */
export const FILTERS = ['user_id', 'session_id', 'persona_id', 'model', 'endpoint', 'status', 'rating', 'analysis_category', 'from', 'to'] as const;
/** the statuses an exchange can have (GET /v1/requests refuses any other) */
const STATUSES = ['completed', 'failed', 'client_aborted', 'upstream_error', 'upstream_timeout', 'interrupted', 'pending', 'queued'];
const POLL_MS = 2000;
const PAGE = 50;

export function statusColor(status: string): string {
  return status === 'completed' ? 'green' : status === 'pending' || status === 'queued' ? 'blue' : 'red';
}

const columns: Columns<Exchange> = [
  { id: 'time', header: 'Time', cell: ({ row }) => <Anchor component={Link} to={`/requests/${row.original.id}`} size="sm" style={{ whiteSpace: 'nowrap' }}>{fmtTime(row.original.created_at)}</Anchor> },
  { id: 'user', header: 'User', cell: ({ row }) => <Text size="sm" truncate maw={200}>{row.original.user_id}</Text> },
  { id: 'model', header: 'Model', cell: ({ row }) => row.original.model ?? row.original.endpoint },
  { id: 'status', header: 'Status', cell: ({ row }) => <Badge color={statusColor(row.original.status)} variant="light">{row.original.status}</Badge> },
  { id: 'tokens', header: 'Tokens', cell: ({ row }) => fmtInt(row.original.usage.total_tokens) },
  { id: 'cost', header: 'Cost', cell: ({ row }) => fmtCost(row.original.cost) },
  { id: 'latency', header: 'Latency', cell: ({ row }) => fmtMs(row.original.latency_ms) },
  { id: 'ttfb', header: 'TTFB', cell: ({ row }) => fmtMs(row.original.time_to_first_byte_ms) },
  {
    id: 'rating',
    header: 'Rating',
    cell: ({ row }) => {
      const r = row.original.ratings;
      return r && r.count ? <span data-testid="row-rating">{`★ ${fmtRating(r.average)}`}{r.count > 1 ? ` (${r.count})` : ''}</span> : '—';
    },
  },
];

function toInstant(local: string | null): string | undefined {
  if (!local) return undefined;
  const d = new Date(local);
  return Number.isNaN(d.getTime()) ? undefined : d.toISOString();
}

export function ExchangesView() {
  const [params, setParams] = useSearchParams();
  const navigate = useNavigate();
  const filters = useMemo(() => Object.fromEntries(FILTERS.map((f) => [f, params.get(f) ?? ''])) as Record<(typeof FILTERS)[number], string>, [params]);
  const apiFilters = { ...filters, from: toInstant(filters.from), to: toInstant(filters.to) };

  const personas = useQuery({ queryKey: ['personas'], queryFn: () => apiFetch<ListPage<Persona>>('/v1/personas?limit=100') });
  const list = useInfiniteQuery({
    queryKey: ['requests', apiFilters],
    queryFn: ({ pageParam }) => apiFetch<ListPage<Exchange>>(`/v1/requests${qs({ ...apiFilters, limit: PAGE, after: pageParam })}`),
    initialPageParam: undefined as string | undefined,
    getNextPageParam: (last) => (last.has_more ? (last.last_id ?? undefined) : undefined),
    // new exchanges appear while the page is open
    refetchInterval: POLL_MS,
    refetchIntervalInBackground: false,
  });
  const rows = useMemo(() => list.data?.pages.flatMap((p) => p.data) ?? [], [list.data]);
  const filtered = FILTERS.some((f) => filters[f]);
  // a narrow window shows the filters on demand
  const narrow = useMediaQuery('(max-width: 48em)');
  const [showFilters, setShowFilters] = useState(false);

  function apply(e: FormEvent<HTMLFormElement>) {
    e.preventDefault();
    const form = new FormData(e.currentTarget);
    const next = new URLSearchParams();
    for (const f of FILTERS) {
      const v = String(form.get(f) ?? '').trim();
      if (v) next.set(f, v);
    }
    setParams(next);
  }

  return (
    <Stack>
      <Group justify="space-between">
        <Title order={2}>Exchanges</Title>
        <Group gap="xs">
          {list.isFetching && <Loader size="xs" aria-label="refreshing" />}
          <Text size="xs" c="dimmed">
            newest first · updates every {POLL_MS / 1000} s
          </Text>
        </Group>
      </Group>
      {narrow && (
        <Button variant="default" size="xs" onClick={() => setShowFilters((v) => !v)} aria-expanded={showFilters}>
          Filters{filtered ? ` (${FILTERS.filter((f) => filters[f]).length})` : ''}
        </Button>
      )}
      <Collapse expanded={!narrow || showFilters}>
      <Paper withBorder p="sm">
        <form onSubmit={apply} key={params.toString()} aria-label="Filters">
          <SimpleGrid cols={{ base: 1, xs: 2, md: 5 }} spacing="xs">
            <TextInput name="user_id" label="User" placeholder="X-User-ID" defaultValue={filters.user_id} size="xs" />
            <TextInput name="session_id" label="Session" defaultValue={filters.session_id} size="xs" />
            <Select
              name="persona_id"
              label="Persona"
              size="xs"
              clearable
              defaultValue={filters.persona_id || null}
              data={(personas.data?.data ?? []).map((p) => ({ value: p.id, label: p.name }))}
            />
            <TextInput name="model" label="Model" defaultValue={filters.model} size="xs" />
            <TextInput name="endpoint" label="Route" placeholder="responses, chat.completions, …" defaultValue={filters.endpoint} size="xs" />
            <Select name="status" label="Status" size="xs" clearable defaultValue={filters.status || null} data={STATUSES} />
            <Select name="rating" label="Rating" size="xs" clearable defaultValue={filters.rating || null} data={['5', '4', '3', '2', '1']} />
            <TextInput name="analysis_category" label="Analysis category" defaultValue={filters.analysis_category} size="xs" />
            <TextInput name="from" label="From" type="datetime-local" defaultValue={filters.from} size="xs" />
            <TextInput name="to" label="To" type="datetime-local" defaultValue={filters.to} size="xs" />
          </SimpleGrid>
          <Group mt="xs" gap="xs">
            <Button type="submit" size="xs">
              Apply filters
            </Button>
            {filtered && (
              <Button size="xs" variant="default" onClick={() => setParams(new URLSearchParams())}>
                Clear
              </Button>
            )}
          </Group>
        </form>
      </Paper>
      </Collapse>
      {list.error && <Alert color="red">{errorText(list.error)}</Alert>}
      {list.isPending && <Loader />}
      {list.isSuccess && rows.length === 0 && (filtered ? <Alert color="gray">No exchange matches these filters.</Alert> : <FirstExchange />)}
      {rows.length > 0 && (
        <DataTable label="Exchanges" columns={columns} data={rows} rowId={(r) => r.id} onOpen={(r) => navigate(`/requests/${r.id}`)} />
      )}
      {list.hasNextPage && (
        <Button variant="default" onClick={() => list.fetchNextPage()} loading={list.isFetchingNextPage}>
          Older exchanges
        </Button>
      )}
    </Stack>
  );
}

/** The empty state: how to make a first exchange through this proxy. */
function FirstExchange() {
  const user = loadCredentials()?.userId ?? 'alice@example.com';
  const origin = window.location.origin;
  const curl = `curl ${origin}/v1/responses \\
  -H "Authorization: Bearer $TOKEN" \\
  -H "X-User-ID: ${user}" \\
  -H "Content-Type: application/json" \\
  -d '{"model": "gpt-4o-mini", "input": "Say hello"}'`;
  return (
    <Alert color="blue" title="No exchanges yet">
      <Stack gap="xs">
        <Text size="sm">
          Every call made through this proxy appears here as it happens. Make one (with the token you signed in with in <Code>$TOKEN</Code>, and an
          upstream key set with <Code>npm run -s cli -- key create &lt;org-id&gt; sk-…</Code>):
        </Text>
        <Code block className="curl" data-testid="first-exchange-curl">
          {curl}
        </Code>
        <Text size="sm">Or point the official OpenAI SDK at {origin}/v1 with the same token and an X-User-ID header.</Text>
      </Stack>
    </Alert>
  );
}
