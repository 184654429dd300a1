"""Bar charts as inline SVG, drawn on the server (no JavaScript). Bar
heights are integer arithmetic on the values; labels are escaped."""

from markupsafe import Markup, escape

W, H, PAD_L, PAD_B, PAD_T = 640, 200, 56, 36, 12


def bars(points, unit="L", scale=1000, title=""):
    """points: [(label, value)] with value in the data's own unit (mL);
    scale: data units per shown unit (1000 mL = 1 L). Returns SVG markup."""
    if not points:
        return Markup('<p class="empty">no data yet</p>')
    top = max(max(v for _, v in points), 1)
    plot_w, plot_h = W - PAD_L - 8, H - PAD_B - PAD_T
    step = plot_w // len(points)
    bar_w = max(step - 2, 1)
    parts = [(f'<svg class="chart" role="img" viewBox="0 0 {W} {H}" width="{W}" height="{H}" '
              f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>'),
             f'<text x="4" y="{PAD_T + 10}" class="axis">{escape(_num(top, scale))} {escape(unit)}</text>',
             f'<line x1="{PAD_L}" y1="{PAD_T + plot_h}" x2="{W - 8}" y2="{PAD_T + plot_h}" class="base"/>']
    every = max(len(points) // 8, 1)        # at most ~8 labels under the bars
    for i, (label, v) in enumerate(points):
        h = max(v, 0) * plot_h // top
        x = PAD_L + i * step
        parts.append(f'<rect x="{x}" y="{PAD_T + plot_h - h}" width="{bar_w}" height="{h}">'
                     f'<title>{escape(label)}: {escape(_num(v, scale))} {escape(unit)}</title></rect>')
        if i % every == 0:
            parts.append(f'<text x="{x}" y="{H - PAD_B + 16}" class="label">{escape(label)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _num(v, scale):
    """v / scale with one decimal, in integers: 12345 mL -> "12.3"."""
    sign = "-" if v < 0 else ""
    tenths = (abs(v) * 10 + scale // 2) // scale
    return f"{sign}{tenths // 10:,}.{tenths % 10}"
