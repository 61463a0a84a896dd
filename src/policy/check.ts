/**
 * `flowgate check`: validate a config file without running anything (list files are read,
 * a decide.module is only checked to exist, not imported).
 */
import type { ConfigError } from '../errors.js';
import { ConfigLoadError, loadConfig } from './config.js';

/** Every problem of the config file (and its list files), in order; empty when it is valid. */
export async function checkConfigFile(path: string): Promise<ConfigError[]> {
  try {
    await loadConfig(path);
    return [];
  } catch (err) {
    if (err instanceof ConfigLoadError) return [...err.errors];
    throw err;
  }
}
