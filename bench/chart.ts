// A plain SVG bar chart, written by hand (no dependency): one or more panels of horizontal bars.

export interface Bar {
  label: string;
  value: number;
  /** Text after the bar; defaults to the value with one decimal. */
  text?: string;
  highlight?: boolean;
}

export interface Panel {
  title: string;
  bars: Bar[];
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

export function barChartSvg(title: string, panels: Panel[], footer?: string): string {
  const width = 760;
  const labelW = 230;
  const valueW = 150;
  const barH = 20;
  const gap = 8;
  const plotW = width - labelW - valueW - 20;
  const parts: string[] = [];
  let y = 34;
  parts.push(`<text x="10" y="22" font-size="16" font-weight="bold">${esc(title)}</text>`);
  for (const panel of panels) {
    y += 14;
    parts.push(`<text x="10" y="${y}" font-size="13" font-weight="bold" fill="#333">${esc(panel.title)}</text>`);
    y += 10;
    const finite = panel.bars.filter((b) => Number.isFinite(b.value));
    const max = Math.max(1e-9, ...finite.map((b) => b.value));
    for (const bar of panel.bars) {
      const w = Number.isFinite(bar.value) ? Math.max(1, (plotW * bar.value) / max) : 0;
      const fill = bar.highlight ? '#2b6cb0' : '#a0aec0';
      parts.push(`<text x="${labelW - 8}" y="${y + barH - 6}" font-size="12" text-anchor="end">${esc(bar.label)}</text>`);
      parts.push(`<rect x="${labelW}" y="${y}" width="${w.toFixed(1)}" height="${barH}" fill="${fill}" rx="2"/>`);
      const text = bar.text ?? (Number.isFinite(bar.value) ? bar.value.toFixed(1) : 'n/a');
      parts.push(`<text x="${(labelW + w + 6).toFixed(1)}" y="${y + barH - 6}" font-size="12">${esc(text)}</text>`);
      y += barH + gap;
    }
  }
  if (footer) {
    y += 12;
    parts.push(`<text x="10" y="${y}" font-size="11" fill="#555">${esc(footer)}</text>`);
  }
  y += 12;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${y}" viewBox="0 0 ${width} ${y}" font-family="Helvetica, Arial, sans-serif">`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    ...parts,
    `</svg>`,
    '',
  ].join('\n');
}
