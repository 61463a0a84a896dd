import t from 'tap';
import { compileGlob, normalizePath } from '../../src/policy/glob.js';

function glob(pattern: string): (path: string) => boolean {
  const compiled = compileGlob(pattern);
  if (!compiled.ok) throw new Error(compiled.reason);
  return compiled.glob.test;
}

t.test('matching table', async (t) => {
  const table: [string, string, boolean][] = [
    ['/admin', '/admin', true],
    ['/admin', '/Admin', false],
    ['/admin', '/admin/', false],
    ['/admin/*', '/admin/x', true],
    ['/admin/*', '/admin/', true],
    ['/admin/*', '/admin/x/y', false],
    ['/admin/**', '/admin', true],
    ['/admin/**', '/admin/', true],
    ['/admin/**', '/admin/x/y', true],
    ['/admin/**', '/administrator', false],
    ['/**/secret', '/secret', true],
    ['/**/secret', '/a/b/secret', true],
    ['/**/secret', '/a/b/notsecret', false],
    ['/a/**/b', '/a/b', true],
    ['/a/**/b', '/a/x/y/b', true],
    ['/a/**/b', '/ab', false],
    ['/*.php', '/index.php', true],
    ['/*.php', '/dir/index.php', false],
    ['/**/*.php', '/dir/index.php', true],
    ['/**', '/', true],
    ['/**', '/anything/at/all', true],
    ['**', '/x', true],
    ['/file?.txt', '/file1.txt', true],
    ['/file?.txt', '/file.txt', false],
    ['/file?.txt', '/file/.txt', false],
    ['/a.b', '/axb', false],
    ['/(x)+[y]', '/(x)+[y]', true],
    ['/', '/', true],
  ];
  for (const [pattern, path, want] of table) t.equal(glob(pattern)(path), want, `${pattern} ~ ${path}`);
});

t.test('bad globs', async (t) => {
  t.match(compileGlob(''), { ok: false, reason: /empty/ });
  t.match(compileGlob('/a**'), { ok: false, reason: /whole path segment/ });
  t.match(compileGlob('/***'), { ok: false, reason: /whole path segment/ });
  t.match(compileGlob('/a b'), { ok: false, reason: /spaces/ });
  t.match(compileGlob('admin'), { ok: false, reason: /starts with/ });
});

t.test('path normalisation', async (t) => {
  const table: [string, string][] = [
    ['/admin?x=1', '/admin'],
    ['/admin#frag', '/admin'],
    ['/%61dmin', '/admin'],
    ['/%7euser', '/~user'],
    ['/a%2fb', '/a%2Fb'],
    ['/a/../admin', '/admin'],
    ['/a/./b', '/a/b'],
    ['/../../admin', '/admin'],
    ['/a/%2e%2e/admin', '/admin'],
    ['/a/..', '/'],
    ['/a/b/.', '/a/b/'],
    ['/Admin', '/Admin'],
    ['*', '*'],
  ];
  for (const [raw, want] of table) t.equal(normalizePath(raw), want, raw);
});
