import { Alert, Button, Group, Loader, Paper, Stack, Text, Textarea, TextInput, Title } from '@mantine/core';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { FormEvent, useState } from 'react';
import { useNavigate } from 'react-router';
import { apiFetch, errorText, ListPage, Persona } from '../api';
import { Columns, DataTable } from '../DataTable';
import { fmtTime } from '../format';

const columns: Columns<Persona> = [
  { id: 'name', header: 'Name', cell: ({ row }) => <Text fw={600} size="sm">{row.original.name}</Text> },
  { id: 'version', header: 'Version', cell: ({ row }) => row.original.version },
  { id: 'description', header: 'Description', cell: ({ row }) => <Text size="sm" truncate maw={360}>{row.original.description ?? ''}</Text> },
  { id: 'updated', header: 'Updated', cell: ({ row }) => fmtTime(row.original.updated_at) },
];

export function PersonasView() {
  const navigate = useNavigate();
  const q = useQuery({ queryKey: ['personas'], queryFn: () => apiFetch<ListPage<Persona>>('/v1/personas?limit=100') });
  const [creating, setCreating] = useState(false);
  return (
    <Stack>
      <Group justify="space-between">
        <Title order={2}>Personas</Title>
        <Button size="xs" onClick={() => setCreating((c) => !c)}>
          New persona
        </Button>
      </Group>
      {creating && <NewPersona onDone={(p) => navigate(`/personas/${p.id}`)} />}
      {q.error && <Alert color="red">{errorText(q.error)}</Alert>}
      {q.isPending && <Loader />}
      {q.data && q.data.data.length === 0 && (
        <Alert color="blue" title="No personas yet">
          A persona is a versioned system prompt: create one here (or with POST /v1/personas), then send <code>"persona_id"</code> in a
          /v1/responses or /v1/chat/completions body. Its exchanges, ratings and analyses are then compared version by version.
        </Alert>
      )}
      {q.data && q.data.data.length > 0 && (
        <DataTable label="Personas" columns={columns} data={q.data.data} rowId={(p) => p.id} onOpen={(p) => navigate(`/personas/${p.id}`)} />
      )}
    </Stack>
  );
}

function NewPersona({ onDone }: { onDone: (p: Persona) => void }) {
  const client = useQueryClient();
  const create = useMutation({
    mutationFn: (body: { name: string; content: string; description?: string }) => apiFetch<Persona>('/v1/personas', { method: 'POST', body }),
    onSuccess: (p) => {
      void client.invalidateQueries({ queryKey: ['personas'] });
      onDone(p);
    },
  });
  function submit(e: FormEvent<HTMLFormElement>) {
    e.preventDefault();
    const f = new FormData(e.currentTarget);
    const description = String(f.get('description') ?? '').trim();
    create.mutate({ name: String(f.get('name') ?? '').trim(), content: String(f.get('content') ?? ''), ...(description ? { description } : {}) });
  }
  return (
    <Paper withBorder p="sm">
      <form onSubmit={submit} aria-label="New persona">
        <Stack gap="xs">
          <TextInput name="name" label="Name" required maxLength={100} />
          <TextInput name="description" label="Description" />
          <Textarea name="content" label="Content" required autosize minRows={4} />
          {create.error && <Alert color="red">{errorText(create.error)}</Alert>}
          <Group>
            <Button type="submit" loading={create.isPending}>
              Create
            </Button>
          </Group>
        </Stack>
      </form>
    </Paper>
  );
}
