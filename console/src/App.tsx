import { Alert, AppShell, Badge, Burger, Button, Group, NavLink, Paper, PasswordInput, Stack, Text, TextInput, Title } from '@mantine/core';
import { useDisclosure } from '@mantine/hooks';
import { useQueryClient } from '@tanstack/react-query';
import { FormEvent, useEffect, useState } from 'react';
import { Link, Navigate, Route, Routes, useLocation } from 'react-router';
import { apiFetch, clearCredentials, Credentials, errorText, loadCredentials, saveCredentials, setUnauthorizedHandler, tokenScopes } from './api';
import { AnalysisView } from './views/Analysis';
import { ExchangeView } from './views/Exchange';
import { ExchangesView } from './views/Exchanges';
import { PersonaView } from './views/Persona';
import { PersonasView } from './views/Personas';
import { SessionView } from './views/Session';
import { UsageView } from './views/Usage';

const NAV = [
  { to: '/requests', label: 'Exchanges' },
  { to: '/personas', label: 'Personas' },
  { to: '/usage', label: 'Usage' },
  { to: '/analysis', label: 'Analysis' },
];

export function App() {
  const [creds, setCreds] = useState<Credentials | null>(() => loadCredentials());
  const [expired, setExpired] = useState<string | null>(null);
  const queryClient = useQueryClient();

  useEffect(() => {
    setUnauthorizedHandler(() => {
      clearCredentials();
      queryClient.clear();
      setExpired('The server no longer accepts this token (expired or revoked). Sign in again.');
      setCreds(null);
    });
    return () => setUnauthorizedHandler(null);
  }, [queryClient]);

  if (!creds) {
    return (
      <SignIn
        notice={expired}
        onSignedIn={(c) => {
          setExpired(null);
          setCreds(c);
        }}
      />
    );
  }
  return (
    <Shell
      creds={creds}
      onSignOut={() => {
        clearCredentials();
        queryClient.clear();
        setCreds(null);
      }}
    />
  );
}

function SignIn({ onSignedIn, notice }: { onSignedIn: (c: Credentials) => void; notice: string | null }) {
  const [token, setToken] = useState('');
  const [userId, setUserId] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  async function submit(e: FormEvent) {
    e.preventDefault();
    const c = { token: token.trim(), userId: userId.trim() };
    if (!c.token || !c.userId) {
      setError('Both the token and the user ID are needed.');
      return;
    }
    setBusy(true);
    setError(null);
    try {
      // a read the console needs everywhere: proves the token, its read scope and the user id at once
      await apiFetch('/v1/personas?limit=1', { credentials: c });
      saveCredentials(c);
      onSignedIn(c);
    } catch (err) {
      setError(errorText(err));
    } finally {
      setBusy(false);
    }
  }

  return (
    <Stack align="center" justify="center" mih="100vh" p="md">
      <Paper withBorder shadow="sm" p="xl" w="100%" maw={480}>
        <form onSubmit={submit} aria-label="Sign in">
          <Stack>
            <Title order={2}>Proxy console</Title>
            <Text size="sm" c="dimmed">
              Paste a token of your organization (it needs the <b>read</b> scope; editing needs <b>manage</b>) and the user ID
              (X-User-ID) to act as. Make one with <code>npm run -s cli -- jwt create --org-id &lt;org-id&gt;</code>. They stay in
              this tab only.
            </Text>
            {notice && <Alert color="yellow">{notice}</Alert>}
            <PasswordInput label="Token" value={token} onChange={(e) => setToken(e.currentTarget.value)} autoComplete="off" required />
            <TextInput label="User ID" value={userId} onChange={(e) => setUserId(e.currentTarget.value)} autoComplete="off" required />
            {error && (
              <Alert color="red" role="alert" title="Sign-in failed">
                {error}
              </Alert>
            )}
            <Button type="submit" loading={busy}>
              Sign in
            </Button>
          </Stack>
        </form>
      </Paper>
    </Stack>
  );
}

function Shell({ creds, onSignOut }: { creds: Credentials; onSignOut: () => void }) {
  const [opened, { toggle, close }] = useDisclosure();
  const location = useLocation();
  const scopes = tokenScopes(creds.token);
  const canManage = scopes.includes('manage');
  useEffect(close, [location.pathname, close]);

  return (
    <AppShell header={{ height: 56 }} navbar={{ width: 200, breakpoint: 'sm', collapsed: { mobile: !opened } }} padding="md">
      <AppShell.Header>
        <Group h="100%" px="md" justify="space-between" wrap="nowrap">
          <Group wrap="nowrap">
            <Burger opened={opened} onClick={toggle} hiddenFrom="sm" size="sm" aria-label="Menu" />
            <Text fw={700} component={Link} to="/requests">
              Proxy console
            </Text>
          </Group>
          <Group gap="xs" wrap="nowrap">
            {!canManage && (
              <Badge color="gray" variant="light" title="Editing and running analyses need the manage scope">
                read-only
              </Badge>
            )}
            <Text size="sm" c="dimmed" visibleFrom="sm" data-testid="signed-in-as">
              {creds.userId}
            </Text>
            <Button size="xs" variant="default" onClick={onSignOut}>
              Sign out
            </Button>
          </Group>
        </Group>
      </AppShell.Header>
      <AppShell.Navbar p="xs" aria-label="Views">
        {NAV.map((n) => (
          <NavLink
            key={n.to}
            component={Link}
            to={n.to}
            label={n.label}
            active={location.pathname.startsWith(n.to) || (n.to === '/requests' && location.pathname.startsWith('/sessions'))}
          />
        ))}
      </AppShell.Navbar>
      <AppShell.Main>
        <Routes>
          <Route path="/" element={<Navigate to="/requests" replace />} />
          <Route path="/requests" element={<ExchangesView />} />
          <Route path="/requests/:id" element={<ExchangeView />} />
          <Route path="/sessions/:id" element={<SessionView />} />
          <Route path="/personas" element={<PersonasView />} />
          <Route path="/personas/:id" element={<PersonaView />} />
          <Route path="/usage" element={<UsageView />} />
          <Route path="/analysis" element={<AnalysisView />} />
          <Route path="*" element={<Alert color="yellow">No such page in the console.</Alert>} />
        </Routes>
      </AppShell.Main>
    </AppShell>
  );
}
