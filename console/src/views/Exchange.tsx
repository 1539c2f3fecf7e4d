import { Alert, Anchor, Badge, Button, Code, Group, Loader, Paper, Rating, SegmentedControl, Select, SimpleGrid, Stack, Table, Tabs, Text, Textarea, Title } from '@mantine/core';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { useEffect, useState } from 'react';
import { Link, useParams } from 'react-router';
import { AnalysisConfig, AnalysisResult, ApiError, apiFetch, errorText, Exchange, ListPage, qs, Rating as RatingT } from '../api';
import { fmtCost, fmtInt, fmtMs, fmtTime } from '../format';
import { ChatMessage, conversationOf } from './chat';
import { statusColor } from './Exchanges';

const ROLE_COLOR: Record<string, string> = { system: 'grape', developer: 'grape', user: 'blue', assistant: 'teal', tool: 'orange', reasoning: 'gray' };

export function ChatView({ messages }: { messages: ChatMessage[] }) {
  if (!messages.length) return <Text c="dimmed">No conversation stored (capture mode, or a call without text).</Text>;
  return (
    <Stack gap="xs" data-testid="chat">
      {messages.map((m, i) => (
        <Paper
          key={i}
          withBorder
          p="sm"
          ml={m.role === 'user' ? 0 : 'xl'}
          mr={m.role === 'user' ? 'xl' : 0}
          bg={m.role === 'user' ? 'blue.0' : m.role === 'assistant' ? 'teal.0' : undefined}
          data-role={m.role}
        >
          <Group gap="xs" mb={4}>
            <Badge size="xs" color={ROLE_COLOR[m.role] ?? 'gray'}>
              {m.role === 'system' ? 'instructions' : m.role}
            </Badge>
            {m.kind === 'tool_call' && <Badge size="xs" variant="outline">tool call: {m.name}</Badge>}
            {m.kind === 'tool_result' && <Badge size="xs" variant="outline">tool result</Badge>}
          </Group>
          {m.kind === 'text' ? <Text className="chat-bubble" size="sm">{m.text}</Text> : <Code block>{m.text}</Code>}
        </Paper>
      ))}
    </Stack>
  );
}

export function ExchangeView() {
  const { id = '' } = useParams();
  const q = useQuery({ queryKey: ['request', id], queryFn: () => apiFetch<Exchange>(`/v1/requests/${encodeURIComponent(id)}`) });
  if (q.isPending) return <Loader />;
  if (q.error) return <Alert color="red">{errorText(q.error)}</Alert>;
  const x = q.data;
  const messages = conversationOf(x.request_body, x.response_body, x.output_text);
  const facts: [string, React.ReactNode][] = [
    ['Request id', <Code>{x.id}</Code>],
    ['Time', fmtTime(x.created_at)],
    ['User', x.user_id],
    ['Session', <Anchor component={Link} to={`/sessions/${encodeURIComponent(x.session_id)}`}>{x.session_id}</Anchor>],
    ['Persona', x.persona_id ? <Anchor component={Link} to={`/personas/${x.persona_id}`}>{`version ${x.persona_version ?? '?'}`}</Anchor> : '—'],
    ['Route', x.route ?? x.endpoint],
    ['Model', x.model ?? '—'],
    ['Status', <Badge color={statusColor(x.status)} variant="light">{`${x.status}${x.upstream_status ? ` (${x.upstream_status})` : ''}`}</Badge>],
    ['Tokens', `${fmtInt(x.usage.input_tokens)} in · ${fmtInt(x.usage.output_tokens)} out · ${fmtInt(x.usage.total_tokens)} total${x.usage.cached_tokens ? ` · ${fmtInt(x.usage.cached_tokens)} cached` : ''}${x.usage.reasoning_tokens ? ` · ${fmtInt(x.usage.reasoning_tokens)} reasoning` : ''}`],
    ['Cost', fmtCost(x.cost)],
    ['Latency', fmtMs(x.latency_ms)],
    ['Time to first byte', fmtMs(x.time_to_first_byte_ms)],
    ['Key source', x.key_source ?? '—'],
    ['Upstream request id', x.upstream_request_id ? <Code>{x.upstream_request_id}</Code> : '—'],
    ['Stored', x.capture_mode],
  ];
  return (
    <Stack>
      <Group justify="space-between">
        <Title order={2}>Exchange</Title>
        <Anchor component={Link} to="/requests" size="sm">
          ← all exchanges
        </Anchor>
      </Group>
      <SimpleGrid cols={{ base: 1, md: 3 }}>
        <Stack style={{ gridColumn: 'span 2' }} miw={0}>
          <Tabs defaultValue="chat" keepMounted={false}>
            <Tabs.List>
              <Tabs.Tab value="chat">Conversation</Tabs.Tab>
              <Tabs.Tab value="raw">Raw JSON</Tabs.Tab>
              <Tabs.Tab value="analysis">Analysis</Tabs.Tab>
            </Tabs.List>
            <Tabs.Panel value="chat" pt="sm">
              <ChatView messages={messages} />
            </Tabs.Panel>
            <Tabs.Panel value="raw" pt="sm">
              <Code block data-testid="raw-json">
                {JSON.stringify(x, null, 2)}
              </Code>
            </Tabs.Panel>
            <Tabs.Panel value="analysis" pt="sm">
              <RunAnalysis requestId={x.id} />
            </Tabs.Panel>
          </Tabs>
        </Stack>
        <Stack miw={0}>
          <RateIt requestId={x.id} />
          <Paper withBorder p="sm">
            <Table fz="sm" aria-label="Details">
              <Table.Tbody>
                {facts.map(([k, v]) => (
                  <Table.Tr key={k}>
                    <Table.Th w={140}>{k}</Table.Th>
                    <Table.Td style={{ wordBreak: 'break-all' }}>{v}</Table.Td>
                  </Table.Tr>
                ))}
              </Table.Tbody>
            </Table>
          </Paper>
        </Stack>
      </SimpleGrid>
    </Stack>
  );
}

function RateIt({ requestId }: { requestId: string }) {
  const client = useQueryClient();
  const mine = useQuery({
    queryKey: ['rating', requestId],
    queryFn: async () => {
      try {
        return await apiFetch<RatingT>(`/v1/requests/${requestId}/rating`);
      } catch (err) {
        if (err instanceof ApiError && err.status === 404) return null;
        throw err;
      }
    },
  });
  const [value, setValue] = useState(0);
  const [comment, setComment] = useState('');
  useEffect(() => {
    if (mine.data) {
      setValue(mine.data.rating);
      setComment(mine.data.comment ?? '');
    }
  }, [mine.data]);
  const save = useMutation({
    mutationFn: () => apiFetch<RatingT>(`/v1/requests/${requestId}/rating`, { method: 'POST', body: { rating: value, ...(comment ? { comment } : {}) } }),
    onSuccess: (r) => {
      client.setQueryData(['rating', requestId], r);
      void client.invalidateQueries({ queryKey: ['requests'] });
    },
  });
  return (
    <Paper withBorder p="sm" aria-label="Your rating">
      <Stack gap="xs">
        <Text fw={600} size="sm">
          Your rating
        </Text>
        <Rating value={value} onChange={setValue} aria-label="Rating" getSymbolLabel={(v) => `${v} star${v > 1 ? "s" : ""}`} />
        <Textarea placeholder="Comment (optional)" value={comment} onChange={(e) => setComment(e.currentTarget.value)} autosize minRows={1} maxLength={2000} />
        <Group>
          <Button size="xs" disabled={!value} loading={save.isPending} onClick={() => save.mutate()}>
            Save rating
          </Button>
          {save.isSuccess && !save.isPending && (
            <Text size="xs" c="green" data-testid="rating-saved">
              Saved
            </Text>
          )}
          {mine.data && !save.isSuccess && (
            <Text size="xs" c="dimmed">
              rated {fmtTime(mine.data.rated_at)}
            </Text>
          )}
        </Group>
        {save.error && <Alert color="red">{errorText(save.error)}</Alert>}
      </Stack>
    </Paper>
  );
}

const INLINE_EXAMPLE = JSON.stringify(
  { analysis_type: 'sentiment', include_metadata: true },
  null,
  2,
);

export function AnalysisResultCard({ r }: { r: AnalysisResult }) {
  return (
    <Paper withBorder p="sm" data-testid="analysis-result">
      <Group gap="xs">
        <Badge>{r.analysis_type}</Badge>
        <Text fw={700}>{r.primary_category}</Text>
        <Text size="sm" c="dimmed">
          confidence {r.confidence.toFixed(2)} · {r.model} · {fmtCost(r.cost)} {r.cached ? '· cached' : ''} · {fmtTime(r.created_at)}
        </Text>
      </Group>
      <Text size="sm" mt={4}>
        {r.reasoning}
      </Text>
      <Table fz="xs" mt="xs">
        <Table.Tbody>
          {r.categories.map((c) => (
            <Table.Tr key={c.name}>
              <Table.Td>{c.name}</Table.Td>
              <Table.Td>{c.score.toFixed(2)}</Table.Td>
            </Table.Tr>
          ))}
        </Table.Tbody>
      </Table>
      {r.metadata && (
        <Text size="xs" c="dimmed" mt={4}>
          {[r.metadata.sentiment && `sentiment ${r.metadata.sentiment}`, r.metadata.urgency && `urgency ${r.metadata.urgency}`, r.metadata.topics?.length && `topics ${r.metadata.topics.join(', ')}`]
            .filter(Boolean)
            .join(' · ')}
        </Text>
      )}
    </Paper>
  );
}

function RunAnalysis({ requestId }: { requestId: string }) {
  const client = useQueryClient();
  const configs = useQuery({ queryKey: ['analysis-configs'], queryFn: () => apiFetch<ListPage<AnalysisConfig>>('/v1/analysis/configs?limit=100') });
  const results = useQuery({ queryKey: ['analysis-results', requestId], queryFn: () => apiFetch<ListPage<AnalysisResult>>(`/v1/analysis/results${qs({ request_id: requestId, limit: 20 })}`) });
  const [mode, setMode] = useState<'saved' | 'inline'>('saved');
  const [configId, setConfigId] = useState<string | null>(null);
  const [inline, setInline] = useState(INLINE_EXAMPLE);
  const [inlineError, setInlineError] = useState<string | null>(null);
  const run = useMutation({
    mutationFn: (body: unknown) => apiFetch<AnalysisResult>('/v1/analysis', { method: 'POST', body }),
    onSuccess: () => void client.invalidateQueries({ queryKey: ['analysis-results', requestId] }),
  });
  // the result just run is shown above, not again among the earlier ones
  const earlier = (results.data?.data ?? []).filter((r) => r.id !== run.data?.id);
  function start() {
    setInlineError(null);
    if (mode === 'saved') {
      if (configId) run.mutate({ request_id: requestId, config_id: configId });
      return;
    }
    try {
      run.mutate({ request_id: requestId, config: JSON.parse(inline) });
    } catch {
      setInlineError('The inline configuration is not valid JSON.');
    }
  }
  return (
    <Stack>
      <SegmentedControl value={mode} onChange={(v) => setMode(v as 'saved' | 'inline')} data={[{ value: 'saved', label: 'Saved config' }, { value: 'inline', label: 'Inline config' }]} />
      {mode === 'saved' ? (
        <Select
          label="Configuration"
          placeholder={configs.data?.data.length ? 'Pick one' : 'No saved configuration: create one in Analysis'}
          data={(configs.data?.data ?? []).map((c) => ({ value: c.id, label: `${c.name} (${c.analysis_type})` }))}
          value={configId}
          onChange={setConfigId}
        />
      ) : (
        <Textarea label="Inline configuration (JSON)" value={inline} onChange={(e) => setInline(e.currentTarget.value)} autosize minRows={4} styles={{ input: { fontFamily: "var(--mantine-font-family-monospace)" } }} />
      )}
      {inlineError && <Alert color="red">{inlineError}</Alert>}
      <Group>
        <Button onClick={start} loading={run.isPending} disabled={mode === 'saved' && !configId}>
          Run analysis
        </Button>
      </Group>
      {run.error && <Alert color="red">{errorText(run.error)}</Alert>}
      {run.data && <AnalysisResultCard r={run.data} />}
      <Title order={5}>Earlier results</Title>
      {earlier.length ? earlier.map((r) => <AnalysisResultCard key={r.id} r={r} />) : <Text c="dimmed" size="sm">None yet.</Text>}
    </Stack>
  );
}
