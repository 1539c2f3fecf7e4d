import { BarChart } from '@mantine/charts';
import { Alert, Group, Loader, Paper, Progress, SegmentedControl, SimpleGrid, Stack, Table, Text, Title } from '@mantine/core';
import { useQuery } from '@tanstack/react-query';
import { useState } from 'react';
import { apiFetch, errorText, Limits, LimitsView, ListPage, Persona, qs, UsageRow } from '../api';
import { daysAgo, fmtCost, fmtInt } from '../format';
import { Stat } from './Persona';

const GROUPS = [
  { value: 'day', label: 'By day' },
  { value: 'model', label: 'By model' },
  { value: 'user', label: 'By user' },
  { value: 'persona', label: 'By persona' },
];

interface Merged {
  key: string;
  proxy_cost: number;
  analysis_cost: number;
  proxy_requests: number;
  analysis_requests: number;
  tokens: number;
  errors: number;
}

/** One row per key with proxied traffic and analysis calls side by side. */
function merge(rows: UsageRow[]): Merged[] {
  const by = new Map<string, Merged>();
  for (const r of rows) {
    const m = by.get(r.key) ?? { key: r.key, proxy_cost: 0, analysis_cost: 0, proxy_requests: 0, analysis_requests: 0, tokens: 0, errors: 0 };
    if (r.source === 'analysis') {
      m.analysis_cost += r.cost;
      m.analysis_requests += r.requests;
    } else {
      m.proxy_cost += r.cost;
      m.proxy_requests += r.requests;
    }
    m.tokens += r.tokens.total;
    m.errors += r.errors;
    by.set(r.key, m);
  }
  return [...by.values()];
}

export function UsageView() {
  const [group, setGroup] = useState('day');
  const [days, setDays] = useState('30');
  const from = daysAgo(Number(days)).toISOString();
  const usage = useQuery({ queryKey: ['usage', group, days], queryFn: () => apiFetch<{ data: UsageRow[] }>(`/v1/analytics/usage${qs({ group_by: group, from })}`) });
  // the ten users of highest cost only: an organization can have tens of thousands of users in a period
  const users = useQuery({ queryKey: ['usage', 'user', days], queryFn: () => apiFetch<{ data: UsageRow[] }>(`/v1/analytics/usage${qs({ group_by: 'user', from, order: 'cost', limit: '10' })}`) });
  const personas = useQuery({ queryKey: ['personas'], queryFn: () => apiFetch<ListPage<Persona>>('/v1/personas?limit=100'), enabled: group === 'persona' });
  const limits = useQuery({ queryKey: ['limits'], queryFn: () => apiFetch<Limits>('/v1/limits'), refetchInterval: 10_000 });

  const rows = usage.data ? merge(usage.data.data) : [];
  if (group === 'day') rows.sort((a, b) => a.key.localeCompare(b.key));
  else rows.sort((a, b) => b.proxy_cost + b.analysis_cost - (a.proxy_cost + a.analysis_cost));
  const personaName = new Map((personas.data?.data ?? []).map((p) => [p.id, p.name]));
  const label = (k: string) => (group === 'persona' ? (personaName.get(k) ?? (k === '' || k === 'null' ? '(none)' : k.slice(0, 8))) : k || '(none)');
  const chart = rows.map((r) => ({ key: label(r.key), proxied: r.proxy_cost, analysis: r.analysis_cost }));
  const topUsers = users.data ? merge(users.data.data).sort((a, b) => b.proxy_cost + b.analysis_cost - (a.proxy_cost + a.analysis_cost)).slice(0, 10) : [];
  const total = rows.reduce((s, r) => ({ proxy: s.proxy + r.proxy_cost, analysis: s.analysis + r.analysis_cost, requests: s.requests + r.proxy_requests, analyses: s.analyses + r.analysis_requests }), { proxy: 0, analysis: 0, requests: 0, analyses: 0 });

  return (
    <Stack>
      <Group justify="space-between">
        <Title order={2}>Usage</Title>
        <Group>
          <SegmentedControl size="xs" value={days} onChange={setDays} data={[{ value: '7', label: '7 days' }, { value: '30', label: '30 days' }, { value: '90', label: '90 days' }]} />
        </Group>
      </Group>
      {usage.error && <Alert color="red">{errorText(usage.error)}</Alert>}
      <SimpleGrid cols={{ base: 2, md: 4 }}>
        <Stat label="Proxied requests" value={fmtInt(total.requests)} />
        <Stat label="Proxied cost" value={fmtCost(total.proxy)} />
        <Stat label="Analysis calls" value={fmtInt(total.analyses)} />
        <Stat label="Analysis cost" value={fmtCost(total.analysis)} />
      </SimpleGrid>
      <SegmentedControl value={group} onChange={setGroup} data={GROUPS} />
      <Paper withBorder p="sm">
        <Text fw={600} size="sm" mb="xs">
          Cost (USD), proxied traffic and analysis apart
        </Text>
        {usage.isPending ? (
          <Loader />
        ) : rows.length === 0 ? (
          <Text c="dimmed" size="sm">
            Nothing in this period yet: calls through /v1/responses or /v1/chat/completions and analyses show here.
          </Text>
        ) : (
          <BarChart h={260} data={chart} dataKey="key" type="stacked" series={[{ name: 'proxied', color: 'blue.6' }, { name: 'analysis', color: 'orange.6' }]} valueFormatter={(v) => fmtCost(v)} withLegend />
        )}
      </Paper>
      {rows.length > 0 && (
        <Paper withBorder p="sm">
          <Table.ScrollContainer minWidth={560}>
            <Table fz="sm" aria-label="Usage">
              <Table.Thead>
                <Table.Tr>
                  <Table.Th>{GROUPS.find((g) => g.value === group)!.label.replace('By ', '')}</Table.Th>
                  <Table.Th>Requests</Table.Th>
                  <Table.Th>Analyses</Table.Th>
                  <Table.Th>Tokens</Table.Th>
                  <Table.Th>Errors</Table.Th>
                  <Table.Th>Proxied cost</Table.Th>
                  <Table.Th>Analysis cost</Table.Th>
                </Table.Tr>
              </Table.Thead>
              <Table.Tbody>
                {rows.map((r) => (
                  <Table.Tr key={r.key}>
                    <Table.Td>{label(r.key)}</Table.Td>
                    <Table.Td>{fmtInt(r.proxy_requests)}</Table.Td>
                    <Table.Td>{fmtInt(r.analysis_requests)}</Table.Td>
                    <Table.Td>{fmtInt(r.tokens)}</Table.Td>
                    <Table.Td>{fmtInt(r.errors)}</Table.Td>
                    <Table.Td>{fmtCost(r.proxy_cost)}</Table.Td>
                    <Table.Td>{fmtCost(r.analysis_cost)}</Table.Td>
                  </Table.Tr>
                ))}
              </Table.Tbody>
            </Table>
          </Table.ScrollContainer>
        </Paper>
      )}
      <SimpleGrid cols={{ base: 1, md: 2 }}>
        <Paper withBorder p="sm">
          <Text fw={600} size="sm" mb="xs">
            Top users by cost
          </Text>
          <Table fz="sm" aria-label="Top users by cost">
            <Table.Tbody>
              {topUsers.map((u) => (
                <Table.Tr key={u.key}>
                  <Table.Td style={{ wordBreak: 'break-all' }}>{u.key}</Table.Td>
                  <Table.Td>{fmtInt(u.proxy_requests)} requests</Table.Td>
                  <Table.Td>{fmtCost(u.proxy_cost + u.analysis_cost)}</Table.Td>
                </Table.Tr>
              ))}
            </Table.Tbody>
          </Table>
          {!topUsers.length && <Text size="sm" c="dimmed">No user has spent anything in this period.</Text>}
        </Paper>
        <Paper withBorder p="sm">
          <Text fw={600} size="sm" mb="xs">
            Limits and budgets
          </Text>
          {limits.error && <Alert color="red">{errorText(limits.error)}</Alert>}
          {limits.data && (
            <Stack gap="sm">
              <LimitBlock title="Organization" v={limits.data.organization} />
              <LimitBlock title={`User ${limits.data.user.external_id ?? ''}`} v={limits.data.user} />
            </Stack>
          )}
        </Paper>
      </SimpleGrid>
    </Stack>
  );
}

function LimitBlock({ title, v }: { title: string; v: LimitsView }) {
  const lines: [string, number | null, number | null, (n: number | null) => string][] = [
    ['Requests this minute', v.limits.rpm, v.usage.requests_this_minute, fmtInt],
    ['Tokens this minute', v.limits.tpm, v.usage.tokens_this_minute, fmtInt],
    ['Spent today', v.limits.daily_budget_usd, v.usage.cost_today_usd, fmtCost],
    ['Spent this month', v.limits.monthly_budget_usd, v.usage.cost_this_month_usd, fmtCost],
  ];
  return (
    <div>
      <Text size="sm" fw={600}>
        {title}
      </Text>
      {lines.map(([name, limit, used, fmt]) => (
        <div key={name}>
          <Group justify="space-between">
            <Text size="xs">{name}</Text>
            <Text size="xs">{limit === null ? 'no limit' : `${fmt(used ?? 0)} of ${fmt(limit)}`}</Text>
          </Group>
          {limit !== null && <Progress value={Math.min(100, ((used ?? 0) / limit) * 100)} color={(used ?? 0) >= limit ? 'red' : 'blue'} size="sm" />}
        </div>
      ))}
    </div>
  );
}
