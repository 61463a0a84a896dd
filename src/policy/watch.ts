/**
 * Watching `lists` files for changes, so the caller can reload: on a change it loads the
 * config again (loadConfig), compiles a new Policy and swaps it in; the watcher itself only
 * says which files changed. Folders are watched rather than files, so lists replaced by
 * rename (editors, `mv new.txt list.txt`) keep being noticed. Watchers do not keep the
 * process alive.
 */
import { watch, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';
import type { Config } from './config-types.js';

/** Default quiet time before reporting changes, in ms: a file written in pieces reports once. */
export const DEFAULT_WATCH_DEBOUNCE_MS = 500;

/** Options of watchLists. */
export interface WatchOptions {
  /** Quiet time after the last change before onChange is called, in ms; default 500. */
  debounceMs?: number;
}

/** A running watch; close it when the config it watched is replaced. */
export interface ListWatcher {
  close(): void;
}

/** The list files a config reads, absolute, each once. */
export function listFiles(config: Config): string[] {
  const paths = new Set<string>();
  for (const rule of config.rules) for (const list of rule.lists ?? []) paths.add(list.path);
  return [...paths];
}

/**
 * Calls `onChange(paths)` after the list files of `config` change (created, written, renamed
 * over or removed), once per burst of changes. A folder that cannot be watched is skipped.
 */
export function watchLists(config: Config, onChange: (paths: string[]) => void, options: WatchOptions = {}): ListWatcher {
  const debounceMs = options.debounceMs ?? DEFAULT_WATCH_DEBOUNCE_MS;
  const byFolder = new Map<string, Map<string, string>>();
  for (const path of listFiles(config)) {
    const folder = dirname(path);
    if (!byFolder.has(folder)) byFolder.set(folder, new Map());
    byFolder.get(folder)!.set(basename(path), path);
  }
  const changed = new Set<string>();
  let timer: NodeJS.Timeout | undefined;
  let closed = false;
  const flush = (): void => {
    timer = undefined;
    if (closed || changed.size === 0) return;
    const paths = [...changed];
    changed.clear();
    onChange(paths);
  };
  const watchers: FSWatcher[] = [];
  for (const [folder, files] of byFolder) {
    let watcher: FSWatcher;
    try {
      watcher = watch(folder, { persistent: false }, (_event, filename) => {
        const hits = filename === null ? [...files.values()] : [files.get(filename.toString())].filter((p) => p !== undefined);
        if (hits.length === 0 || closed) return;
        for (const path of hits) changed.add(path);
        clearTimeout(timer);
        timer = setTimeout(flush, debounceMs);
        timer.unref();
      });
    } catch {
      continue;
    }
    watcher.on('error', () => watcher.close());
    watchers.push(watcher);
  }
  return {
    close: () => {
      closed = true;
      clearTimeout(timer);
      for (const w of watchers) w.close();
    },
  };
}
