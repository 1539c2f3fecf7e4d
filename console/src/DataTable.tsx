import { ScrollArea, Table } from '@mantine/core';
import { type ColumnDef, type RowData, tableFeatures, useTable } from '@tanstack/react-table';
import { KeyboardEvent, useRef } from 'react';

const features = tableFeatures({});
export type Columns<T extends RowData> = ColumnDef<typeof features, T, any>[];
export { features as tableFeaturesOfConsole };

/**
 * A TanStack table rendered with Mantine's Table. Rows are focusable: Tab reaches the first, ↑/↓ (or k/j) move,
 * Home/End jump, Enter opens the row.
 */
export function DataTable<T extends RowData>({
  columns,
  data,
  rowId,
  onOpen,
  label,
}: {
  columns: Columns<T>;
  data: T[];
  rowId: (row: T) => string;
  onOpen?: (row: T) => void;
  label: string;
}) {
  const table = useTable({ features, columns, data, getRowId: (row: T) => rowId(row) });
  const body = useRef<HTMLTableSectionElement>(null);

  function onKey(e: KeyboardEvent<HTMLTableRowElement>, index: number, row: T) {
    const rows = body.current ? Array.from(body.current.querySelectorAll<HTMLTableRowElement>('tr[data-row]')) : [];
    let next = -1;
    if (e.key === 'ArrowDown' || e.key === 'j') next = Math.min(index + 1, rows.length - 1);
    else if (e.key === 'ArrowUp' || e.key === 'k') next = Math.max(index - 1, 0);
    else if (e.key === 'Home') next = 0;
    else if (e.key === 'End') next = rows.length - 1;
    else if (e.key === 'Enter' && onOpen) {
      e.preventDefault();
      onOpen(row);
      return;
    }
    if (next >= 0) {
      e.preventDefault();
      rows[next]?.focus();
    }
  }

  return (
    <ScrollArea type="auto">
      <Table className="data-table" striped highlightOnHover aria-label={label} miw={640}>
        <Table.Thead>
          {table.getHeaderGroups().map((group) => (
            <Table.Tr key={group.id}>
              {group.headers.map((header) => (
                <Table.Th key={header.id}>{header.isPlaceholder ? null : <table.FlexRender header={header} />}</Table.Th>
              ))}
            </Table.Tr>
          ))}
        </Table.Thead>
        <Table.Tbody ref={body}>
          {table.getRowModel().rows.map((row, i) => (
            <Table.Tr
              key={row.id}
              data-row={row.id}
              tabIndex={0}
              onClick={(e) => {
                if ((e.target as HTMLElement).closest('a,button')) return;
                onOpen?.(row.original);
              }}
              onKeyDown={(e) => onKey(e, i, row.original)}
            >
              {row.getAllCells().map((cell) => (
                <Table.Td key={cell.id}>
                  <table.FlexRender cell={cell} />
                </Table.Td>
              ))}
            </Table.Tr>
          ))}
        </Table.Tbody>
      </Table>
    </ScrollArea>
  );
}
