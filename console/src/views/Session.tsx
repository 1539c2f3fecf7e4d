import { Alert, Anchor, Badge, Group, Loader, Paper, SimpleGrid, Stack, Text, Title } from '@mantine/core';
import { useQuery } from '@tanstack/react-query';
import { Link, useParams } from 'react-router';
import { apiFetch, errorText, Exchange, ListPage, qs } from '../api';
import { fmtCost, fmtInt, fmtMs, fmtRating, fmtTime } from '../format';
import { ChatView } from './Exchange';
import { conversationOf } from './chat';
import { statusColor } from './Exchanges';

const MAX_TURNS = 1000;

/** Every exchange of the session, oldest first (all pages, up to MAX_TURNS). */
async function loadSession(id: string): Promise<{ turns: Exchange[]; truncated: boolean }> {
  const turns: Exchange[] = [];
  let after: string | undefined;
  for (;;) {
    const page = await apiFetch<ListPage<Exchange>>(`/v1/sessions/${encodeURIComponent(id)}${qs({ limit: 100, after })}`);
    turns.push(...page.data);
    if (!page.has_more || !page.last_id) return { turns, truncated: false };
    if (turns.length >= MAX_TURNS) return { turns, truncated: true };
    after = page.last_id;
  }
}

export function SessionView() {
  const { id = '' } = useParams();
  const q = useQuery({ queryKey: ['session', id], queryFn: () => loadSession(id), refetchInterval: 5000 });
  if (q.isPending) return <Loader />;
  if (q.error) return <Alert color="red">{errorText(q.error)}</Alert>;
  const { turns, truncated } = q.data;
  const cost = turns.reduce((s, t) => s + (t.cost ?? 0), 0);
  const tokens = turns.reduce((s, t) => s + (t.usage.total_tokens ?? 0), 0);
  const rated = turns.filter((t) => t.ratings?.count);
  const avg = rated.length ? rated.reduce((s, t) => s + (t.ratings!.average ?? 0), 0) / rated.length : null;
  const users = new Set(turns.map((t) => t.user_id));
  const stats: [string, string][] = [
    ['Turns', fmtInt(turns.length)],
    ['Tokens', fmtInt(tokens)],
    ['Cost', fmtCost(cost)],
    ['Average rating', fmtRating(avg)],
    ['Users', [...users].join(', ')],
    ['Started', fmtTime(turns[0]?.created_at)],
  ];
  return (
    <Stack>
      <Group justify="space-between">
        <Title order={2}>Session</Title>
        <Text size="sm" c="dimmed" style={{ wordBreak: 'break-all' }}>
          {id}
        </Text>
      </Group>
      <SimpleGrid cols={{ base: 2, sm: 3, lg: 6 }} data-testid="session-totals">
        {stats.map(([k, v]) => (
          <Paper withBorder p="xs" key={k}>
            <Text size="xs" c="dimmed">
              {k}
            </Text>
            <Text fw={700} truncate data-stat={k}>
              {v}
            </Text>
          </Paper>
        ))}
      </SimpleGrid>
      {truncated && <Alert color="yellow">The first {MAX_TURNS} turns are shown.</Alert>}
      {turns.map((t, i) => (
        <Paper withBorder p="sm" key={t.id} data-testid="turn">
          <Group justify="space-between" mb="xs">
            <Group gap="xs">
              <Text fw={600}>Turn {i + 1}</Text>
              <Badge color={statusColor(t.status)} variant="light">
                {t.status}
              </Badge>
              {t.persona_id && (
                <Anchor component={Link} to={`/personas/${t.persona_id}`} size="sm">
                  persona v{t.persona_version}
                </Anchor>
              )}
            </Group>
            <Group gap="md">
              <Text size="sm">{t.ratings?.count ? `★ ${fmtRating(t.ratings.average)}` : 'not rated'}</Text>
              <Text size="sm">{fmtCost(t.cost)}</Text>
              <Text size="sm">{fmtMs(t.latency_ms)}</Text>
              <Anchor component={Link} to={`/requests/${t.id}`} size="sm">
                {fmtTime(t.created_at)}
              </Anchor>
            </Group>
          </Group>
          <ChatView messages={lastTurnOnly(conversationOf(t.request_body, t.response_body, t.output_text))} />
        </Paper>
      ))}
    </Stack>
  );
}

/** A turn repeats the conversation so far (chat completions resend it): show from its last user message on. */
function lastTurnOnly<T extends { role: string }>(messages: T[]): T[] {
  let lastUser = -1;
  messages.forEach((m, i) => {
    if (m.role === 'user') lastUser = i;
  });
  return lastUser > 0 ? messages.slice(lastUser) : messages;
}
