/**
 * A generated legacy estate for the demo and the end-to-end tests: business-shaped tables (customers,
 * products, orders, order lines with a composite key, invoices) with NULLs, unicode, decimals and
 * timestamps, generated inside the database so that a million rows take seconds, and a wave of random inserts,
 * updates and deletes between syncs. The same tables, values and waves on each dialect: estate-postgres.ts and
 * estate-mssql.ts.
 */
import type { Db } from '../dialect/types.ts';

export interface EstateTable {
  /** Source id in the configuration, and the table's name. */
  id: string;
  key: string[];
  /** Share of the estate's row budget. */
  weight: number;
}

export const ESTATE_TABLES: readonly EstateTable[] = [
  { id: 'customers', key: ['customer_id'], weight: 1 },
  { id: 'products', key: ['product_id'], weight: 0.5 },
  { id: 'orders', key: ['order_id'], weight: 2 },
  { id: 'order_lines', key: ['order_id', 'line_no'], weight: 4 },
  { id: 'invoices', key: ['invoice_id'], weight: 1.5 },
];

export function tableRows(totalRows: number, table: EstateTable): number {
  const weights = ESTATE_TABLES.reduce((a, t) => a + t.weight, 0);
  return Math.max(10, Math.round((totalRows * table.weight) / weights));
}

/** Rows of each table for an estate of `totalRows`, and order lines per order (the same on each dialect). */
export function estateSizes(totalRows: number): { customers: number; products: number; orders: number; invoices: number; linesPerOrder: number } {
  const n = (id: string) => tableRows(totalRows, ESTATE_TABLES.find((t) => t.id === id)!);
  const orders = n('orders');
  return { customers: n('customers'), products: n('products'), orders, invoices: n('invoices'), linesPerOrder: Math.max(1, Math.round(n('order_lines') / orders)) };
}

/** Create and fill the estate's tables in a legacy database of either dialect. `totalRows` is spread over the tables. */
export async function createEstate(db: Db, totalRows: number, seed: number): Promise<Record<string, number>> {
  if (db.dialect === 'postgres') await (await import('./estate-postgres.ts')).createPostgresEstate(db, totalRows, seed);
  else await (await import('./estate-mssql.ts')).createMssqlEstate(db, totalRows, seed);
  const counts: Record<string, number> = {};
  for (const t of ESTATE_TABLES) {
    const rows = await db.query<{ n: unknown }>(`SELECT count(*) AS n FROM ${db.quote(t.id)}`);
    counts[t.id] = Number(rows[0]!.n);
  }
  return counts;
}

/**
 * A wave of changes: about `fraction` of each table's rows updated, a third as many inserted and as many
 * deleted. Includes case-only and trailing-space edits, NULL↔value flips.
 */
export async function mutateEstate(db: Db, fraction: number): Promise<void> {
  if (db.dialect === 'postgres') await (await import('./estate-postgres.ts')).mutatePostgresEstate(db, fraction);
  else await (await import('./estate-mssql.ts')).mutateMssqlEstate(db, fraction);
}
