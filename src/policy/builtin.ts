/** The built-in observe policy used when `run` or `replay` is given no config: allow everything, report every decision. */
import { parseConfig, type Config } from './config.js';
import { FlowgateError } from '../errors.js';

/** A fully defaulted config with no rules and `default: allow`. */
export function builtinConfig(): Config {
  const parsed = parseConfig('default: allow\n', '(built-in)');
  if (parsed.config === undefined) throw new FlowgateError('ERR_INTERNAL', 'the built-in config does not parse');
  return { ...parsed.config, file: null };
}
