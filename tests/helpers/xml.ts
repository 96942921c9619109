// Parses SVG with a real XML parser (Python's expat, which rejects anything not well-formed) and
// lists its elements, so plot tests check what a browser would read.
import { spawnSync } from 'node:child_process';

export interface XmlElement { tag: string; attrib: Record<string, string>; text: string }

const SCRIPT = `
import json, sys, xml.etree.ElementTree as ET
root = ET.fromstring(sys.stdin.buffer.read())
out = [{"tag": e.tag.split("}")[-1], "attrib": e.attrib, "text": e.text or ""} for e in root.iter()]
print(json.dumps({"root": root.tag, "els": out}))`;

/** Every element of an SVG document, in document order; throws unless it is well-formed SVG. */
export function parseSvg(svg: string): XmlElement[] {
  const r = spawnSync('python3', ['-c', SCRIPT], { input: svg, encoding: 'utf8' });
  if (r.error) throw new Error(`parseSvg needs python3 on PATH: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`not well-formed XML: ${r.stderr}`);
  const { root, els } = JSON.parse(r.stdout) as { root: string; els: XmlElement[] };
  if (root !== '{http://www.w3.org/2000/svg}svg') throw new Error(`the root element is ${root}, not an SVG <svg>`);
  return els;
}
