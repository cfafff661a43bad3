/** The generated estate in PostgreSQL (src/demo/estate.ts), generated inside the server with generate_series. */
import type { Db } from '../dialect/types.ts';
import { estateSizes } from './estate.ts';

const NAMES = `ARRAY['Müller','Ødegaard','Nguyễn','O''Brien','Smith','Łukasz','Zoë','김민준','Anaïs','José','🦄 Unicorn Ltd','  Padded  ']`;

/** Create and fill the estate's tables in a PostgreSQL database. `totalRows` is spread over the tables. */
export async function createPostgresEstate(db: Db, totalRows: number, seed: number): Promise<void> {
  const { customers, products, orders, invoices, linesPerOrder } = estateSizes(totalRows);
  await db.execute(`SELECT setseed(${(seed % 1000) / 1000})`);
  await db.execute(`
    CREATE TABLE customers (
      customer_id integer PRIMARY KEY, name text NOT NULL, email varchar(200), country char(2),
      credit_limit numeric(12,2), created_at timestamp(6) NOT NULL, is_active boolean NOT NULL, notes text);
    INSERT INTO customers
      SELECT g, (${NAMES})[1 + g % 12] || ' ' || g, CASE WHEN g % 7 = 0 THEN NULL ELSE 'c' || g || '@example.com' END,
             (ARRAY['DE','NO','VN','IE','US','PL'])[1 + g % 6], CASE WHEN g % 5 = 0 THEN NULL ELSE round((random() * 100000)::numeric, 2) END,
             timestamp '2020-01-01' + (g * interval '37 minutes 13.123457 seconds'), g % 3 <> 0,
             CASE WHEN g % 4 = 0 THEN NULL ELSE 'note ' || md5(g::text) END
      FROM generate_series(1, ${customers}) g;

    CREATE TABLE products (
      product_id integer PRIMARY KEY, sku varchar(40) NOT NULL, title text NOT NULL, price numeric(10,4) NOT NULL,
      weight_kg double precision, discontinued boolean NOT NULL);
    INSERT INTO products
      SELECT g, 'SKU-' || lpad(g::text, 8, '0'), 'Product ' || g || ' ' || (${NAMES})[1 + g % 12], round((random() * 1000)::numeric, 4),
             CASE WHEN g % 9 = 0 THEN NULL ELSE random() * 50 END, g % 17 = 0
      FROM generate_series(1, ${products}) g;

    CREATE TABLE orders (
      order_id bigint PRIMARY KEY, customer_id integer NOT NULL, ordered_at timestamp(6) NOT NULL, status varchar(20) NOT NULL,
      total numeric(14,2), currency char(3) NOT NULL, shipped_at timestamp(6));
    INSERT INTO orders
      SELECT g, 1 + (g::bigint * 7919) % ${customers}, timestamp '2022-01-01' + (g * interval '11 minutes 7.654321 seconds'),
             (ARRAY['new','paid','shipped','cancelled'])[1 + g % 4], round((random() * 5000)::numeric, 2),
             (ARRAY['EUR','USD','NOK'])[1 + g % 3], CASE WHEN g % 4 = 2 THEN timestamp '2022-01-02' + (g * interval '11 minutes') END
      FROM generate_series(1, ${orders}) g;

    CREATE TABLE order_lines (
      order_id bigint NOT NULL, line_no integer NOT NULL, product_id integer NOT NULL, quantity integer NOT NULL,
      unit_price numeric(10,4) NOT NULL, discount numeric(5,4), PRIMARY KEY (order_id, line_no));
    INSERT INTO order_lines
      SELECT o, l, 1 + (o::bigint * 31 + l) % ${products}, 1 + (o + l) % 9, round((random() * 200)::numeric, 4),
             CASE WHEN (o + l) % 6 = 0 THEN round((random() * 0.3)::numeric, 4) END
      FROM generate_series(1, ${orders}) o, generate_series(1, ${linesPerOrder}) l;

    CREATE TABLE invoices (
      invoice_id integer PRIMARY KEY, order_id bigint NOT NULL, issued_on date NOT NULL, amount numeric(14,2) NOT NULL,
      paid boolean NOT NULL, reference uuid, pdf bytea);
    INSERT INTO invoices
      SELECT g, 1 + (g::bigint * 104729) % ${orders}, date '2022-01-01' + (g % 1000), round((random() * 5000)::numeric, 2), g % 2 = 0,
             CASE WHEN g % 10 = 0 THEN NULL ELSE md5('inv' || g)::uuid END,
             CASE WHEN g % 3 = 0 THEN decode(md5(g::text), 'hex') END
      FROM generate_series(1, ${invoices}) g;
    ANALYZE;
  `);
}

/** A wave of changes (estate.ts, mutateEstate). */
export async function mutatePostgresEstate(db: Db, fraction: number): Promise<void> {
  const pct = Math.max(0.0001, fraction);
  await db.execute(`
    UPDATE customers SET name = upper(name), credit_limit = CASE WHEN credit_limit IS NULL THEN 1.50 ELSE NULL END
      WHERE random() < ${pct};
    UPDATE customers SET email = email || ' ' WHERE email IS NOT NULL AND random() < ${pct / 3};
    INSERT INTO customers SELECT m + g, 'New Kunde ' || g, NULL, 'DE', 10.00, now()::timestamp(6), true, 'ünïcødé 🦄'
      FROM (SELECT max(customer_id) AS m FROM customers) x, generate_series(1, GREATEST(1, (SELECT count(*) FROM customers) * ${pct / 3})::int) g;
    DELETE FROM customers WHERE random() < ${pct / 3};

    UPDATE products SET price = price + 0.0001 WHERE random() < ${pct};
    UPDATE orders SET status = 'shipped', shipped_at = timestamp '2024-06-01 12:00:00.000001' WHERE random() < ${pct};
    DELETE FROM orders WHERE random() < ${pct / 3};
    UPDATE order_lines SET quantity = quantity + 1, discount = NULL WHERE random() < ${pct};
    DELETE FROM order_lines WHERE random() < ${pct / 3};
    INSERT INTO order_lines SELECT order_id, line_no + 1000, product_id, 1, 9.9900, NULL FROM order_lines WHERE random() < ${pct / 3} ON CONFLICT DO NOTHING;
    UPDATE invoices SET paid = NOT paid, pdf = CASE WHEN pdf IS NULL THEN '\\x00ff'::bytea ELSE NULL END WHERE random() < ${pct};
    DELETE FROM invoices WHERE random() < ${pct / 3};
  `);
}
