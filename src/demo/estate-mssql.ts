/**
 * The generated estate in SQL Server (src/demo/estate.ts): the same tables and kinds of values as the PostgreSQL
 * one, generated inside the server from a tally of cross-joined VALUES rows (no generate_series in T-SQL). The
 * values are arithmetic functions of the row number, so a million rows take one INSERT … SELECT per table and no
 * server random function is needed; the wave's rows are chosen the same way, with an offset drawn here.
 */
import type { Db } from '../dialect/types.ts';
import { estateSizes } from './estate.ts';

const NAMES = [`N'Müller'`, `N'Ødegaard'`, `N'Nguyễn'`, `N'O''Brien'`, `N'Smith'`, `N'Łukasz'`, `N'Zoë'`, `N'김민준'`, `N'Anaïs'`, `N'José'`, `N'🦄 Unicorn Ltd'`, `N'  Padded  '`];

/** The common table expressions of `WITH`: for each `[name, n]`, a table `name(g)` of 1..n as bigint (n up to 10^8). */
function tally(...tables: Array<[string, number]>): string {
  return [
    'e1(n) AS (SELECT 1 FROM (VALUES (1),(1),(1),(1),(1),(1),(1),(1),(1),(1)) AS v(n))',
    'e4(n) AS (SELECT 1 FROM e1 AS a CROSS JOIN e1 AS b CROSS JOIN e1 AS c CROSS JOIN e1 AS d)',
    ...tables.map(([name, n]) => `${name}(g) AS (SELECT TOP (${Math.max(0, Math.trunc(n))}) ROW_NUMBER() OVER (ORDER BY (SELECT NULL)) FROM e4 AS a CROSS JOIN e4 AS b)`),
  ].join(', ');
}

/** A pseudo-random whole number in [0, m) from the row number `g` and a salt: deterministic, no server function. */
function spread(g: string, salt: number, m: number): string {
  return `((${g} * 48271 + ${salt * 7919 + 12345}) % 2147483647 % ${m})`;
}

/** Digits of `width` from a whole-number expression, zero-padded (for text and uuids that look random). */
function digits(expr: string, width: number): string {
  return `RIGHT(CONCAT(REPLICATE('0', ${width}), ${expr}), ${width})`;
}

/** Create and fill the estate's tables in a SQL Server database. `totalRows` is spread over the tables. */
export async function createMssqlEstate(db: Db, totalRows: number, seed: number): Promise<void> {
  const { customers, products, orders, invoices, linesPerOrder } = estateSizes(totalRows);
  const names = `CHOOSE(1 + g % 12, ${NAMES.join(', ')})`;
  // A version-4-shaped uuid from the row number (Babelfish cannot render binary as hex text, so no HASHBYTES here).
  const uuid = `CONVERT(uniqueidentifier, CONCAT(${digits(spread('g', seed + 7, 100_000_000), 8)}, '-', ${digits('g % 10000', 4)}, '-4', ${digits(spread('g', seed + 8, 1000), 3)}, '-8', ${digits(spread('g', seed + 9, 1000), 3)}, '-', ${digits('g', 12)}))`;

  await db.execute(`
    CREATE TABLE dbo.customers (
      customer_id int NOT NULL PRIMARY KEY, name nvarchar(200) NOT NULL, email varchar(200) NULL, country char(2) NULL,
      credit_limit decimal(12,2) NULL, created_at datetime2(6) NOT NULL, is_active bit NOT NULL, notes nvarchar(max) NULL);
    CREATE TABLE dbo.products (
      product_id int NOT NULL PRIMARY KEY, sku varchar(40) NOT NULL, title nvarchar(400) NOT NULL, price decimal(10,4) NOT NULL,
      weight_kg float NULL, discontinued bit NOT NULL);
    CREATE TABLE dbo.orders (
      order_id bigint NOT NULL PRIMARY KEY, customer_id int NOT NULL, ordered_at datetime2(6) NOT NULL, status varchar(20) NOT NULL,
      total decimal(14,2) NULL, currency char(3) NOT NULL, shipped_at datetime2(6) NULL);
    CREATE TABLE dbo.order_lines (
      order_id bigint NOT NULL, line_no int NOT NULL, product_id int NOT NULL, quantity int NOT NULL,
      unit_price decimal(10,4) NOT NULL, discount decimal(5,4) NULL, CONSTRAINT pk_order_lines PRIMARY KEY (order_id, line_no));
    CREATE TABLE dbo.invoices (
      invoice_id int NOT NULL PRIMARY KEY, order_id bigint NOT NULL, issued_on date NOT NULL, amount decimal(14,2) NOT NULL,
      paid bit NOT NULL, reference uniqueidentifier NULL, pdf varbinary(max) NULL);`);

  await db.execute(`WITH ${tally(['nums', customers])}
    INSERT INTO dbo.customers (customer_id, name, email, country, credit_limit, created_at, is_active, notes)
    SELECT g, CONCAT(${names}, N' ', g), CASE WHEN g % 7 = 0 THEN NULL ELSE CONCAT('c', g, '@example.com') END,
           CHOOSE(1 + g % 6, 'DE', 'NO', 'VN', 'IE', 'US', 'PL'),
           CASE WHEN g % 5 = 0 THEN NULL ELSE CAST(${spread('g', seed, 10_000_000)} / 100.0 AS decimal(12,2)) END,
           DATEADD(microsecond, CAST((g * 123457) % 1000000 AS int), DATEADD(second, CAST(g % 60 AS int), DATEADD(minute, CAST(g * 37 AS int), CAST('2020-01-01' AS datetime2(6))))),
           CASE WHEN g % 3 <> 0 THEN 1 ELSE 0 END,
           CASE WHEN g % 4 = 0 THEN NULL ELSE CONCAT(N'note ', ${digits(spread('g', seed + 10, 2_000_000_000), 10)}) END
    FROM nums`);
  await db.execute(`WITH ${tally(['nums', products])}
    INSERT INTO dbo.products (product_id, sku, title, price, weight_kg, discontinued)
    SELECT g, CONCAT('SKU-', RIGHT(CONCAT('00000000', g), 8)), CONCAT(N'Product ', g, N' ', ${names}),
           CAST(${spread('g', seed + 1, 10_000_000)} / 10000.0 AS decimal(10,4)),
           CASE WHEN g % 9 = 0 THEN NULL ELSE ${spread('g', seed + 2, 1_000_000)} / 20000.0 END,
           CASE WHEN g % 17 = 0 THEN 1 ELSE 0 END
    FROM nums`);
  await db.execute(`WITH ${tally(['nums', orders])}
    INSERT INTO dbo.orders (order_id, customer_id, ordered_at, status, total, currency, shipped_at)
    SELECT g, 1 + (g * 7919) % ${customers},
           DATEADD(microsecond, CAST((g * 654321) % 1000000 AS int), DATEADD(minute, CAST(g * 11 AS int), CAST('2022-01-01' AS datetime2(6)))),
           CHOOSE(1 + g % 4, 'new', 'paid', 'shipped', 'cancelled'), CAST(${spread('g', seed + 3, 500_000)} / 100.0 AS decimal(14,2)),
           CHOOSE(1 + g % 3, 'EUR', 'USD', 'NOK'),
           CASE WHEN g % 4 = 2 THEN DATEADD(minute, CAST(g * 11 AS int), CAST('2022-01-02' AS datetime2(6))) END
    FROM nums`);
  await db.execute(`WITH ${tally(['nums', orders], ['lines', linesPerOrder])}
    INSERT INTO dbo.order_lines (order_id, line_no, product_id, quantity, unit_price, discount)
    SELECT o.g, l.g, 1 + (o.g * 31 + l.g) % ${products}, 1 + (o.g + l.g) % 9, CAST(${spread('(o.g * 16 + l.g)', seed + 4, 2_000_000)} / 10000.0 AS decimal(10,4)),
           CASE WHEN (o.g + l.g) % 6 = 0 THEN CAST(${spread('(o.g * 16 + l.g)', seed + 5, 3000)} / 10000.0 AS decimal(5,4)) END
    FROM nums AS o CROSS JOIN lines AS l`);
  await db.execute(`WITH ${tally(['nums', invoices])}
    INSERT INTO dbo.invoices (invoice_id, order_id, issued_on, amount, paid, reference, pdf)
    SELECT g, 1 + (g * 104729) % ${orders}, DATEADD(day, CAST(g % 1000 AS int), CAST('2022-01-01' AS date)),
           CAST(${spread('g', seed + 6, 500_000)} / 100.0 AS decimal(14,2)), CASE WHEN g % 2 = 0 THEN 1 ELSE 0 END,
           CASE WHEN g % 10 = 0 THEN NULL ELSE ${uuid} END,
           CASE WHEN g % 3 = 0 THEN HASHBYTES('MD5', CAST(g AS varchar(40))) END
    FROM nums`);
}

/** A wave of changes (estate.ts, mutateEstate). Rows are chosen by a hash of their key with a fresh offset. */
export async function mutateMssqlEstate(db: Db, fraction: number): Promise<void> {
  const pct = Math.max(0.0001, fraction);
  const pick = (key: string, share: number) => `((CAST(${key} AS bigint) * 7919 + ${Math.floor(Math.random() * 1_000_000)}) % 100000) < ${Math.max(1, Math.round(share * 100_000))}`;
  const count = async (table: string) => Number((await db.query<{ n: unknown }>(`SELECT COUNT_BIG(*) AS n FROM dbo.${table}`))[0]!.n);
  const newCustomers = Math.max(1, Math.round((await count('customers')) * (pct / 3)));
  await db.execute(`
    UPDATE dbo.customers SET name = UPPER(name), credit_limit = CASE WHEN credit_limit IS NULL THEN 1.50 ELSE NULL END WHERE ${pick('customer_id', pct)};
    UPDATE dbo.customers SET email = email + ' ' WHERE email IS NOT NULL AND ${pick('customer_id', pct / 3)};`);
  await db.execute(`WITH ${tally(['nums', newCustomers])}
    INSERT INTO dbo.customers (customer_id, name, email, country, credit_limit, created_at, is_active, notes)
    SELECT x.m + g, CONCAT(N'New Kunde ', g), NULL, 'DE', 10.00, CAST(SYSUTCDATETIME() AS datetime2(6)), 1, N'ünïcødé 🦄'
    FROM (SELECT MAX(customer_id) AS m FROM dbo.customers) AS x CROSS JOIN nums`);
  await db.execute(`
    DELETE FROM dbo.customers WHERE ${pick('customer_id + 1', pct / 3)};
    UPDATE dbo.products SET price = price + 0.0001 WHERE ${pick('product_id', pct)};
    UPDATE dbo.orders SET status = 'shipped', shipped_at = CAST('2024-06-01T12:00:00.000001' AS datetime2(6)) WHERE ${pick('order_id', pct)};
    DELETE FROM dbo.orders WHERE ${pick('order_id + 1', pct / 3)};
    UPDATE dbo.order_lines SET quantity = quantity + 1, discount = NULL WHERE ${pick('order_id * 16 + line_no', pct)};
    DELETE FROM dbo.order_lines WHERE ${pick('order_id * 16 + line_no + 1', pct / 3)};
    INSERT INTO dbo.order_lines (order_id, line_no, product_id, quantity, unit_price, discount)
      SELECT l.order_id, l.line_no + 1000, l.product_id, 1, 9.9900, NULL FROM dbo.order_lines AS l
      WHERE ${pick('l.order_id * 16 + l.line_no + 2', pct / 3)}
        AND NOT EXISTS (SELECT 1 FROM dbo.order_lines AS x WHERE x.order_id = l.order_id AND x.line_no = l.line_no + 1000);
    UPDATE dbo.invoices SET paid = 1 - paid, pdf = CASE WHEN pdf IS NULL THEN 0x00FF ELSE NULL END WHERE ${pick('invoice_id', pct)};
    DELETE FROM dbo.invoices WHERE ${pick('invoice_id + 1', pct / 3)};`);
}
