// Flag parsing shared by every command: numbers with ranges, comma lists,
// repeatable flags, and the checks that span several flags. A bad value is a
// usage error that names the flag (commander prints "option '--rank <n>'
// argument 'x' is invalid." followed by the reason given here).
import { InvalidArgumentError, Option } from 'commander';
import { UserError } from '../model/errors.ts';

export interface Range {
  min?: number;
  max?: number;
  /** min itself is not allowed. */
  minExclusive?: boolean;
  /** max itself is not allowed. */
  maxExclusive?: boolean;
}

function describeRange(kind: string, r: Range): string {
  const lo = r.min === undefined ? null : `${r.minExclusive ? '>' : '≥'} ${r.min}`;
  const hi = r.max === undefined ? null : `${r.maxExclusive ? '<' : '≤'} ${r.max}`;
  if (lo && hi) return !r.minExclusive && !r.maxExclusive ? `${kind} from ${r.min} to ${r.max}` : `${kind} ${lo} and ${hi}`;
  return `${kind}${lo ? ` ${lo}` : ''}${hi ? ` ${hi}` : ''}`;
}

function checkRange(value: number, r: Range): boolean {
  if (r.min !== undefined && (r.minExclusive ? value <= r.min : value < r.min)) return false;
  if (r.max !== undefined && (r.maxExclusive ? value >= r.max : value > r.max)) return false;
  return true;
}

/** Parses a whole number in the range (decimal digits only: "1e3" and "2.0" are refused). */
export function parseInteger(flag: string, text: string, range: Range = {}): number {
  const value = /^[+-]?\d+$/.test(text.trim()) ? Number(text) : NaN;
  if (!Number.isSafeInteger(value) || !checkRange(value, range))
    throw new InvalidArgumentError(`${flag} takes ${describeRange('an integer', range)}; got '${text}'.`);
  return value;
}

/** Parses a finite decimal number ("3e-4" allowed) in the range. */
export function parseNumber(flag: string, text: string, range: Range = {}): number {
  const value = text.trim() === '' ? NaN : Number(text);
  if (!Number.isFinite(value) || !checkRange(value, range))
    throw new InvalidArgumentError(`${flag} takes ${describeRange('a number', range)}; got '${text}'.`);
  return value;
}

/** An option taking an integer in `range`. */
export function intOption(flags: string, description: string, range: Range = {}): Option {
  const flag = flagName(flags);
  return new Option(flags, description).argParser((v: string) => parseInteger(flag, v, range));
}

/** An option taking a number in `range`. */
export function numberOption(flags: string, description: string, range: Range = {}): Option {
  const flag = flagName(flags);
  return new Option(flags, description).argParser((v: string) => parseNumber(flag, v, range));
}

/** An option taking one of `choices`. */
export function choiceOption(flags: string, description: string, choices: readonly string[]): Option {
  return new Option(flags, description).choices(choices);
}

/** A flag that may be given several times; the values are collected in order. */
export function repeatableOption(flags: string, description: string): Option {
  return new Option(flags, `${description} (repeatable; default: none)`).argParser((v: string, previous: string[] | undefined) => [...(previous ?? []), v]);
}

/** A comma-separated list of names, each one of `allowed`; `all` stands for all of them. */
export function parseNameList(flag: string, text: string, allowed: readonly string[]): string[] {
  if (text.trim() === 'all') return [...allowed];
  const names = text.split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (names.length === 0) throw new InvalidArgumentError(`${flag} takes a comma-separated list of ${allowed.join(', ')}, or all.`);
  for (const n of names)
    if (!allowed.includes(n)) throw new InvalidArgumentError(`${flag}: '${n}' is not one of ${allowed.join(', ')} (or all).`);
  return allowed.filter((a) => names.includes(a));
}

/** '--rank <n>' → '--rank'; '-o, --out <dir>' → '--out'. */
export function flagName(flags: string): string {
  const long = flags.split(/[ ,|]+/).find((f) => f.startsWith('--'));
  return long ?? flags.split(/[ ,|]+/)[0]!;
}

/** A flag that must be given (for checks commander cannot express, e.g. "unless --resume"). */
export function requireFlag<T>(value: T | undefined, flag: string, why = ''): T {
  if (value === undefined || value === null || value === '')
    throw new UserError(`${flag} is required${why ? ` ${why}` : ''}. Run with --help for the list of flags.`);
  return value;
}
