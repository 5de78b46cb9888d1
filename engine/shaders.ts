// Loads WGSL sources from shaders/ and specialises them by text substitution: every {{KEY}} in the
// source is replaced by defines[KEY]; `//!include name` pulls in shaders/lib/<name>.wgsl once.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const SHADER_DIR = fileURLToPath(new URL('../shaders/', import.meta.url));
const sources = new Map<string, string>();

function read(name: string): string {
  let s = sources.get(name);
  if (s === undefined) {
    try {
      s = readFileSync(`${SHADER_DIR}${name}.wgsl`, 'utf8');
    } catch {
      throw new Error(`shader "${name}" not found (looked for ${SHADER_DIR}${name}.wgsl)`);
    }
    sources.set(name, s);
  }
  return s;
}

export function loadShader(name: string, defines: Record<string, string | number>, hasF16: boolean): string {
  const included = new Set<string>();
  const expand = (src: string): string =>
    src.replace(/^\/\/!include\s+(\S+)\s*$/gm, (_, lib: string) => {
      if (included.has(lib)) return '';
      included.add(lib);
      return expand(read(`lib/${lib}`));
    });
  let code = expand(read(name));
  code = code.replace(/\{\{(\w+)\}\}/g, (m, key: string) => {
    if (!(key in defines)) throw new Error(`shader "${name}": no value for {{${key}}}`);
    return String(defines[key]);
  });
  if (/\bf16\b/.test(code) && !/^\s*enable f16;/m.test(code)) {
    if (!hasF16) throw new Error(`shader "${name}" needs the shader-f16 feature, which this adapter lacks`);
    code = 'enable f16;\n' + code;
  }
  return code;
}
