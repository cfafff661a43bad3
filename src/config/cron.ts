/**
 * A strict check of cron expressions, beside node-cron's own: node-cron accepts steps and values outside a
 * field's range (`*\/99`, minute 75) and the schedule then never fires as the operator meant. Five fields
 * (minute hour day-of-month month day-of-week) or six (a leading second), each a comma list of `*`, `N` or
 * `N-M`, optionally `/STEP`; month and weekday names (JAN, MON) are allowed.
 */
const FIELDS_5 = [
  { name: 'minute', min: 0, max: 59 },
  { name: 'hour', min: 0, max: 23 },
  { name: 'day of month', min: 1, max: 31 },
  { name: 'month', min: 1, max: 12 },
  { name: 'day of week', min: 0, max: 7 },
] as const;
const SECOND = { name: 'second', min: 0, max: 59 } as const;
const NAMES: Record<string, number> = {
  jan: 1, feb: 2, mar: 3, apr: 4, may: 5, jun: 6, jul: 7, aug: 8, sep: 9, oct: 10, nov: 11, dec: 12,
  sun: 0, mon: 1, tue: 2, wed: 3, thu: 4, fri: 5, sat: 6,
};

function value(text: string): number | undefined {
  if (/^\d+$/.test(text)) return Number(text);
  return NAMES[text.toLowerCase()];
}

/** Why `expr` is not a usable cron expression, or null. */
export function cronProblem(expr: string): string | null {
  const parts = expr.trim().split(/\s+/);
  if (parts.length !== 5 && parts.length !== 6) return `has ${parts.length} fields; give 5 (minute hour day month weekday) or 6 (with a leading second)`;
  const fields = parts.length === 6 ? [SECOND, ...FIELDS_5] : [...FIELDS_5];
  for (const [i, part] of parts.entries()) {
    const field = fields[i]!;
    for (const item of part.split(',')) {
      const m = /^(\*|[A-Za-z0-9]+(?:-[A-Za-z0-9]+)?)(?:\/(\d+))?$/.exec(item);
      if (!m) return `${field.name} "${item}" is not *, N, N-M or one of them with /STEP`;
      const [from, to] = m[1] === '*' ? [field.min, field.max] : m[1]!.split('-').map(value);
      const end = to ?? from;
      if (from === undefined || end === undefined) return `${field.name} "${item}" has a value that is neither a number nor a name`;
      if (from < field.min || end > field.max || from > end) return `${field.name} "${item}" is outside ${field.min}-${field.max}`;
      if (m[2] !== undefined) {
        const step = Number(m[2]);
        const span = (m[1] === '*' || to !== undefined ? end - from : field.max - from) + 1;
        if (step < 1 || step > Math.max(1, span)) return `${field.name} step /${step} is outside 1-${Math.max(1, span)}`;
      }
    }
  }
  return null;
}
