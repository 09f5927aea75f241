// fmw's canvas drawing of a plotly figure (dashboard/figure_canvas.py says why and which subset).
//
// The figure arrives as plotly's own JSON ({data, layout}, numpy arrays as base64 typed arrays). It is
// drawn on one <canvas>: heatmaps as scaled bitmaps, images, bars and lines, each on the axes its
// trace names, square pixels where an x axis is anchored to its y axis, titles and annotations as
// text, a horizontal colour bar; hover shows the trace's own hovertemplate, filled in. A later run
// with the same figure (same version) draws nothing; a new figure redraws the same canvas.

const TYPED = {f4: Float32Array, f8: Float64Array, i1: Int8Array, u1: Uint8Array, i2: Int16Array,
  u2: Uint16Array, i4: Int32Array, u4: Uint32Array};
const DEFAULT_COLOUR = "#1f77b4";

// {values: flat array, shape: [sizes]} of a typed-array JSON value or of nested lists; null otherwise
function decode(value) {
  if (value === null || value === undefined) return null;
  if (value.bdata !== undefined) {
    const raw = atob(value.bdata);
    const bytes = new Uint8Array(raw.length);
    for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
    const Type = TYPED[value.dtype] || Float64Array;
    const values = new Type(bytes.buffer, 0, bytes.byteLength / Type.BYTES_PER_ELEMENT);
    const shape = value.shape === undefined ? [values.length] : String(value.shape).split(",").map(Number);
    return {values, shape};
  }
  if (Array.isArray(value)) {
    const shape = [];
    for (let level = value; Array.isArray(level); level = level[0]) shape.push(level.length);
    return {values: value.flat(shape.length - 1), shape};
  }
  return null;
}

function parseColour(text) {
  const hex = /^#([0-9a-f]{6})$/i.exec(text);
  if (hex) return [0, 2, 4].map(i => parseInt(hex[1].slice(i, i + 2), 16));
  const rgb = /rgba?\(([^)]+)\)/.exec(text);
  return rgb ? rgb[1].split(",").slice(0, 3).map(Number) : [0, 0, 0];
}

// 256 RGB colours along a plotly colour scale ([[position, colour], ...]), linear in RGB as plotly's
function colourTable(scale) {
  const stops = (scale || [[0, "#000000"], [1, "#ffffff"]]).map(([at, colour]) => [at, parseColour(colour)]);
  const table = new Uint8ClampedArray(256 * 3);
  for (let i = 0; i < 256; i++) {
    const t = i / 255;
    let k = 0;
    while (k < stops.length - 2 && t > stops[k + 1][0]) k++;
    const [a, ca] = stops[k], [b, cb] = stops[Math.min(k + 1, stops.length - 1)];
    const f = b > a ? Math.min(1, Math.max(0, (t - a) / (b - a))) : 0;
    for (let c = 0; c < 3; c++) table[i * 3 + c] = ca[c] + f * (cb[c] - ca[c]);
  }
  return table;
}

function plain(text) {
  return String(text || "").replace(/<br\s*\/?>/gi, "\n").replace(/<[^>]*>/g, "").replace(/&amp;/g, "&")
    .replace(/&lt;/g, "<").replace(/&gt;/g, ">");
}

function formatNumber(value, spec) {
  if (typeof value !== "number") return String(value);
  const match = /^\.(\d+)([fg])$/.exec(spec || "");
  if (match) return match[2] === "f" ? value.toFixed(+match[1]) : value.toPrecision(+match[1]);
  return Number.isInteger(value) ? String(value) : String(+value.toPrecision(6));
}

// a hovertemplate filled in: %{name} or %{name:format}; <extra>...</extra> becomes a last line
function fillTemplate(template, values) {
  const filled = template.replace(/%\{([^}:]+)(?::([^}]*))?\}/g, (_, name, spec) => {
    const value = values(name.trim());
    return value === undefined ? "" : formatNumber(value, spec);
  });
  return plain(filled.replace(/<extra>(.*?)<\/extra>/, (_, extra) => (extra ? "<br>" + extra : "")));
}

// the smallest and largest finite values (a loop: spreading a million values into Math.min overflows)
function finiteRange(values) {
  let lo = Infinity, hi = -Infinity;
  for (const value of values) {
    if (Number.isFinite(value)) {
      if (value < lo) lo = value;
      if (value > hi) hi = value;
    }
  }
  return lo <= hi ? [lo, hi] : [0, 1];
}

function axisNames(trace) {
  const x = trace.xaxis || "x", y = trace.yaxis || "y";
  return [x, y, "xaxis" + x.slice(1), "yaxis" + y.slice(1)];
}

// the data extent [x0, x1, y0, y1] a trace covers
function extent(trace) {
  if (trace.type === "heatmap" || trace.type === "image") {
    const [h, w] = trace.type === "heatmap" ? trace._z.shape : trace._size;
    const x0 = trace.x0 ?? 0, dx = trace.dx ?? 1, y0 = trace.y0 ?? 0, dy = trace.dy ?? 1;
    return [x0 - dx / 2, x0 + (w - 0.5) * dx, y0 - dy / 2, y0 + (h - 0.5) * dy];
  }
  const [xlo, xhi] = finiteRange(trace._x.values), [lo, hi] = finiteRange(trace._y.values);
  if (trace.type === "bar") return [xlo - 0.5, xhi + 0.5, Math.min(0, lo), Math.max(0, hi)];
  const pad = (hi - lo || 1) * 0.05;
  return [xlo, xhi, lo - pad, hi + pad];
}

// where each pair of axes draws: its box on the canvas and data -> canvas functions
// the colour bars a figure shows: those of its colour axes and of traces with their own colour scale
function colourBars(figure) {
  const layout = figure.layout, bars = [];
  for (const name of new Set(figure.data.map(t => t.coloraxis).filter(Boolean))) {
    const axis = layout[name] || {};
    if (axis.showscale !== false) bars.push({bar: axis.colorbar || {}, scale: axis.colorscale, lo: axis.cmin, hi: axis.cmax});
  }
  for (const trace of figure.data) {
    if (trace.type === "heatmap" && !trace.coloraxis && trace.showscale !== false) {
      const {lo, hi} = colouring(trace, layout);
      bars.push({bar: trace.colorbar || {}, scale: trace.colorscale, lo, hi});
    }
  }
  return bars;
}

function titleText(title) {
  return typeof title === "string" ? title : (title && title.text) || "";
}

// the figure's margins, grown where plotly would grow them for what the canvas draws outside the axes:
// a vertical colour bar on the right, x tick labels and an x axis title below
function margins(figure) {
  const layout = figure.layout, margin = {l: 80, r: 80, t: 100, b: 80, ...(layout.margin || {})};
  if (colourBars(figure).some(({bar}) => bar.orientation !== "h")) margin.r = Math.max(margin.r, 56);
  let below = 0;
  for (const trace of figure.data) {
    const [, , xName] = axisNames(trace), xa = layout[xName] || {};
    if (xa.scaleanchor || xa.visible === false) continue;
    below = Math.max(below, (xa.showticklabels === false ? 0 : 14) + (titleText(xa.title) ? 16 : 0));
  }
  margin.b = Math.max(margin.b, below + 2);
  return margin;
}

function placeAxes(figure, width, height, zoom) {
  const layout = figure.layout, margin = margins(figure);
  const plot = {x: margin.l, y: margin.t, w: width - margin.l - margin.r, h: height - margin.t - margin.b};
  const axes = new Map();
  for (const trace of figure.data) {
    const [x, y, xName, yName] = axisNames(trace);
    const key = x + y;
    if (!axes.has(key)) axes.set(key, {xa: layout[xName] || {}, ya: layout[yName] || {}, traces: [], anchor: x});
    axes.get(key).traces.push(trace);
  }
  for (const [key, axis] of axes.entries()) {
    const {xa, ya} = axis;
    const [xd0, xd1] = xa.domain || [0, 1], [yd0, yd1] = ya.domain || [0, 1];
    const box = {x: plot.x + xd0 * plot.w, y: plot.y + (1 - yd1) * plot.h, w: (xd1 - xd0) * plot.w, h: (yd1 - yd0) * plot.h};
    const extents = axis.traces.map(extent);
    const zoomed = zoom && zoom.get(key);
    const span = (low, high) => [finiteRange(extents.map(e => e[low]))[0], finiteRange(extents.map(e => e[high]))[1]];
    const xr = zoomed ? zoomed.xr : xa.range || span(0, 1);
    const yr = zoomed ? zoomed.yr : ya.range || span(2, 3);
    const reversed = !ya.range && ya.autorange === "reversed";
    const xs = xr[1] - xr[0] || 1, ys = yr[1] - yr[0] || 1;
    let area = box;
    if (xa.scaleanchor) {  // square units, the box shrunk to fit and centred, as plotly's constrain="domain"
      const k = Math.min(box.w / xs, box.h / ys);
      area = {x: box.x + (box.w - xs * k) / 2, y: box.y + (box.h - ys * k) / 2, w: xs * k, h: ys * k};
    }
    axis.area = area;
    axis.key = key;
    axis.picture = !!xa.scaleanchor;
    axis.range = {xr, yr};
    axis.toX = v => area.x + ((v - xr[0]) / xs) * area.w;
    axis.toY = v => (reversed ? area.y + ((v - yr[0]) / ys) * area.h : area.y + area.h - ((v - yr[0]) / ys) * area.h);
    axis.fromX = px => xr[0] + ((px - area.x) / area.w) * xs;
    axis.fromY = py => (reversed ? yr[0] + ((py - area.y) / area.h) * ys : yr[0] + ((area.y + area.h - py) / area.h) * ys);
  }
  return {plot, axes};
}

function colouring(trace, layout) {
  const axis = trace.coloraxis ? layout[trace.coloraxis] || {} : {};
  let lo = trace.zmin ?? axis.cmin, hi = trace.zmax ?? axis.cmax;
  if (lo === undefined || hi === undefined) {
    const [min, max] = finiteRange(trace._z.values);
    lo = lo ?? min;
    hi = hi ?? max;
  }
  return {table: colourTable(trace.colorscale || axis.colorscale), lo, hi};
}

function drawHeatmap(context, trace, axis, layout, drawn) {
  const [h, w] = trace._z.shape, z = trace._z.values;
  const {table, lo, hi} = colouring(trace, layout);
  const bitmap = document.createElement("canvas");
  bitmap.width = w;
  bitmap.height = h;
  const pixels = bitmap.getContext("2d").createImageData(w, h);
  const flip = axis.toY(1) < axis.toY(0);  // first row at the bottom
  const span = hi - lo || 1;
  for (let i = 0; i < h; i++) {
    const row = flip ? h - 1 - i : i;
    for (let j = 0; j < w; j++) {
      const value = z[i * w + j], at = (row * w + j) * 4;
      if (!Number.isFinite(value)) continue;  // a gap: transparent
      const k = Math.round(Math.min(1, Math.max(0, (value - lo) / span)) * 255) * 3;
      pixels.data[at] = table[k];
      pixels.data[at + 1] = table[k + 1];
      pixels.data[at + 2] = table[k + 2];
      pixels.data[at + 3] = 255;
    }
  }
  bitmap.getContext("2d").putImageData(pixels, 0, 0);
  const [x0, x1, y0, y1] = extent(trace);
  const left = axis.toX(x0), top = Math.min(axis.toY(y0), axis.toY(y1));
  const width = axis.toX(x1) - left, height = Math.abs(axis.toY(y1) - axis.toY(y0));
  context.save();
  context.globalAlpha = trace.opacity ?? 1;
  context.imageSmoothingEnabled = false;
  context.drawImage(bitmap, left, top, width, height);
  context.restore();
  drawn.push({name: trace.name, type: "heatmap", rows: h, columns: w, left, top, width, height});
}

function drawImage(context, trace, axis, drawn) {
  const [x0, x1, y0, y1] = extent(trace);
  const left = axis.toX(x0), top = Math.min(axis.toY(y0), axis.toY(y1));
  const width = axis.toX(x1) - left, height = Math.abs(axis.toY(y1) - axis.toY(y0));
  context.drawImage(trace._image, left, top, width, height);
  drawn.push({name: trace.name, type: "image", left, top, width, height});
}

function niceTicks(lo, hi, count) {
  const raw = (hi - lo) / Math.max(1, count), power = Math.pow(10, Math.floor(Math.log10(raw || 1)));
  const step = [1, 2, 2.5, 5, 10].map(m => m * power).find(s => s >= raw) || raw;
  const ticks = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) ticks.push(+v.toPrecision(12));
  return ticks;
}

// grid lines (part "grid", under the traces) or tick labels (over them) of an axis pair that is not a
// picture: y labels inside the axes, x labels and the x title below them
function drawAxes(context, axis, font, part) {
  const {xa, ya, area} = axis;
  if (axis.picture) return;
  const [ylo, yhi] = axis.range.yr;
  if (part === "grid") {
    if (ya.showgrid === false) return;
    context.save();
    context.strokeStyle = ya.gridcolor || "#e6e6e6";
    for (const tick of niceTicks(Math.min(ylo, yhi), Math.max(ylo, yhi), ya.nticks || 5)) {
      const y = Math.round(axis.toY(tick)) + 0.5;
      context.beginPath();
      context.moveTo(area.x, y);
      context.lineTo(area.x + area.w, y);
      context.stroke();
    }
    context.restore();
    return;
  }
  context.save();
  context.font = `9px ${font.family}`;
  context.textBaseline = "bottom";
  if (ya.showgrid !== false && ya.showticklabels !== false) {  // over the traces, on a light backing
    for (const tick of niceTicks(Math.min(ylo, yhi), Math.max(ylo, yhi), ya.nticks || 5)) {
      const y = Math.round(axis.toY(tick)) + 0.5, text = formatNumber(tick);
      context.fillStyle = "rgba(255,255,255,0.75)";
      context.fillRect(area.x, y - 11, context.measureText(text).width + 3, 10);
      context.fillStyle = "#5f6270";
      context.fillText(text, area.x + 1, y - 1);
    }
  }
  if (xa.showticklabels !== false && xa.visible !== false) {
    const [xlo, xhi] = axis.range.xr;
    context.textAlign = "center";
    context.textBaseline = "top";
    context.fillStyle = "#5f6270";
    context.font = `10px ${font.family}`;
    for (const tick of niceTicks(Math.min(xlo, xhi), Math.max(xlo, xhi), xa.nticks || 6)) {
      context.fillText(formatNumber(tick), axis.toX(tick), area.y + area.h + 2);
    }
  }
  context.restore();
  const title = titleText(xa.title);
  if (title) {
    context.fillStyle = font.color;
    const below = area.y + area.h + (xa.showticklabels === false ? 2 : 15);
    drawText(context, title, area.x + area.w / 2, below, 11, font, "center", "top");
  }
}

function drawBars(context, trace, axis, drawn) {
  const xs = trace._x.values, ys = trace._y.values, colours = trace.marker && trace.marker.color;
  const base = axis.toY(0);
  for (let i = 0; i < xs.length; i++) {
    context.fillStyle = Array.isArray(colours) ? colours[i] : colours || DEFAULT_COLOUR;
    const left = axis.toX(xs[i] - 0.5), right = axis.toX(xs[i] + 0.5), top = axis.toY(ys[i]);
    context.fillRect(left, Math.min(top, base), Math.max(right - left, 0.5), Math.abs(base - top));
  }
  const {x: left, y: top, w: width, h: height} = axis.area;
  drawn.push({name: trace.name, type: "bar", bars: xs.length, left, top, width, height});
}

function drawLine(context, trace, axis, drawn) {
  const xs = trace._x.values, ys = trace._y.values;
  const colour = (trace.marker && trace.marker.color) || (trace.line && trace.line.color) || DEFAULT_COLOUR;
  context.save();
  context.strokeStyle = context.fillStyle = colour;
  context.lineWidth = 1.5;
  context.beginPath();
  for (let i = 0; i < xs.length; i++) context[i ? "lineTo" : "moveTo"](axis.toX(xs[i]), axis.toY(ys[i]));
  context.stroke();
  if (String(trace.mode || "").includes("markers")) {
    for (let i = 0; i < xs.length; i++) {
      context.beginPath();
      context.arc(axis.toX(xs[i]), axis.toY(ys[i]), 2.5, 0, 2 * Math.PI);
      context.fill();
    }
  }
  context.restore();
  drawn.push({name: trace.name, type: "scatter", points: xs.length});
}

function drawText(context, text, x, y, size, font, align, baseline) {
  const lines = plain(text).split("\n");
  context.font = `${size}px ${font.family}`;
  context.textAlign = align;
  context.textBaseline = "top";
  const lineHeight = size * 1.3;
  const top = baseline === "bottom" ? y - lines.length * lineHeight : y;
  lines.forEach((line, i) => context.fillText(line, x, top + i * lineHeight));
}

function drawColourBars(context, figure, plot, font) {
  for (const {bar, scale, lo, hi} of colourBars(figure)) {
    const table = colourTable(scale), thickness = bar.thickness || 10, fraction = bar.len ?? 1;
    const labels = [lo, lo === undefined || hi === undefined ? undefined : (lo + hi) / 2, hi];
    context.save();
    if (bar.orientation === "h") {  // below the axes, across them
      const length = fraction * plot.w, left = plot.x + ((1 - fraction) / 2) * plot.w;
      const top = plot.y + (1 - (bar.y ?? -0.01)) * plot.h + (bar.yanchor === "bottom" ? -thickness : 0);
      for (let i = 0; i < 256; i++) {
        context.fillStyle = `rgb(${table[i * 3]},${table[i * 3 + 1]},${table[i * 3 + 2]})`;
        context.fillRect(left + (i / 256) * length, top, length / 256 + 0.5, thickness);
      }
      context.fillStyle = font.color;
      labels.forEach((value, i) => {
        if (value !== undefined) {
          const align = ["left", "center", "right"][i];
          drawText(context, formatNumber(value, ".3g"), left + (i / 2) * length, top + thickness + 1, 10, font, align, "top");
        }
      });
    } else {  // right of the axes, in the margin kept for it
      const length = fraction * plot.h, centre = plot.y + (1 - (bar.y ?? 0.5)) * plot.h;
      const anchor = bar.yanchor || "middle";
      const top = anchor === "top" ? centre : anchor === "bottom" ? centre - length : centre - length / 2;
      const left = plot.x + plot.w + 8;
      for (let i = 0; i < 256; i++) {
        context.fillStyle = `rgb(${table[i * 3]},${table[i * 3 + 1]},${table[i * 3 + 2]})`;
        context.fillRect(left, top + length - ((i + 1) / 256) * length, thickness, length / 256 + 0.5);
      }
      context.fillStyle = font.color;
      labels.forEach((value, i) => {
        if (value === undefined) return;
        const y = top + length - (i / 2) * length - 5;
        drawText(context, formatNumber(value, ".3g"), left + thickness + 2, y, 9, font, "left", "top");
      });
      const title = titleText(bar.title);
      if (title) drawText(context, title, left, top - 2, 9, font, "left", "bottom");
    }
    context.restore();
  }
}

// Photos decoded once per page, by their source: the same photo lies under every Compare column's
// gates at every depth. Promises, so figures arriving together share one decode; at most 32 kept.
const IMAGES = new Map();

function decodedImage(source) {
  let image = IMAGES.get(source);
  if (image === undefined) {
    const element = new Image();
    element.src = source;
    image = element.decode().then(() => element);
    image.catch(() => IMAGES.delete(source));  // a photo that failed to decode is tried again next time
    IMAGES.set(source, image);
    if (IMAGES.size > 32) IMAGES.delete(IMAGES.keys().next().value);
  } else {  // most recently used last
    IMAGES.delete(source);
    IMAGES.set(source, image);
  }
  return image;
}

async function prepare(figure) {
  for (const [index, trace] of figure.data.entries()) {
    trace.name = trace.name ?? `trace ${index}`;  // plotly's name for a trace without one
    if (trace.type === "heatmap") trace._z = decode(trace.z);
    if (trace.type === "bar" || trace.type === "scatter") {
      trace._y = decode(trace.y);
      trace._x = decode(trace.x) || {values: Array.from(trace._y.values, (_, i) => i), shape: [trace._y.values.length]};
    }
    if (trace.customdata !== undefined) trace._custom = decode(trace.customdata);
    if (trace.type === "image" && trace.source) {
      trace._image = await decodedImage(trace.source);
      trace._size = [trace._image.naturalHeight, trace._image.naturalWidth];
    } else if (trace.type === "image") {  // the pixels themselves, (H, W, 3 or 4) in 0-255
      const {values, shape} = decode(trace.z), [h, w, channels] = shape;
      const bitmap = document.createElement("canvas");
      bitmap.width = w;
      bitmap.height = h;
      const pixels = bitmap.getContext("2d").createImageData(w, h);
      for (let i = 0; i < h * w; i++) {
        for (let c = 0; c < 3; c++) pixels.data[i * 4 + c] = values[i * channels + c];
        pixels.data[i * 4 + 3] = channels > 3 ? values[i * channels + 3] : 255;
      }
      bitmap.getContext("2d").putImageData(pixels, 0, 0);
      trace._image = bitmap;
      trace._size = [h, w];
    }
  }
  return figure;
}

function draw(root, figure) {
  const width = root.clientWidth, height = figure.layout.height || 450;
  const layout = figure.layout;
  const font = {family: getComputedStyle(root).fontFamily || "sans-serif", size: 12, color: "#31333f", ...(layout.font || {})};
  const canvas = root.querySelector("canvas"), ratio = window.devicePixelRatio || 1;
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  canvas.style.height = `${height}px`;
  const context = canvas.getContext("2d");
  context.setTransform(ratio, 0, 0, ratio, 0, 0);
  context.fillStyle = layout.paper_bgcolor || "white";
  context.fillRect(0, 0, width, height);
  const placed = placeAxes(figure, width, height, root._zoom);
  const drawn = [];
  for (const axis of placed.axes.values()) drawAxes(context, axis, font, "grid");
  for (const trace of figure.data) {
    const [x, y] = axisNames(trace), axis = placed.axes.get(x + y);
    context.save();
    context.beginPath();
    context.rect(axis.area.x, axis.area.y, axis.area.w, axis.area.h);
    context.clip();  // a zoomed axis shows only its part of each trace
    if (trace.type === "heatmap") drawHeatmap(context, trace, axis, layout, drawn);
    else if (trace.type === "image") drawImage(context, trace, axis, drawn);
    else if (trace.type === "bar") drawBars(context, trace, axis, drawn);
    else if (trace.type === "scatter") drawLine(context, trace, axis, drawn);
    context.restore();
  }
  for (const axis of placed.axes.values()) drawAxes(context, axis, font, "labels");
  context.fillStyle = font.color;
  for (const note of layout.annotations || []) {
    const x = placed.plot.x + note.x * placed.plot.w, y = placed.plot.y + (1 - note.y) * placed.plot.h;
    drawText(context, note.text, x, y - 1, (note.font && note.font.size) || font.size, font, "center", "bottom");
  }
  const title = typeof layout.title === "string" ? {text: layout.title} : layout.title || {};
  if (title.text) {
    const size = (title.font && title.font.size) || font.size + 2, lines = plain(title.text).split("\n").length;
    const top = title.y !== undefined && title.yanchor === "top"  // as fmw's Compare columns place it
      ? (1 - title.y) * height + ((title.pad && title.pad.t) || 0) - size * 0.6
      : Math.max(2, (placed.plot.y - lines * size * 1.3) / 2);  // plotly's default: amid the top margin
    drawText(context, title.text, width / 2, top, size, font, "center", "top");
  }
  drawColourBars(context, figure, placed.plot, font);
  return {placed, drawn};
}

// the hover text at canvas point (px, py): the topmost trace there that has a hovertemplate
function hoverText(figure, placed, px, py) {
  for (const trace of [...figure.data].reverse()) {
    if (!trace.hovertemplate || trace.hoverinfo === "skip") continue;
    const [x, y] = axisNames(trace), axis = placed.axes.get(x + y);
    const {area} = axis;
    if (px < area.x || px > area.x + area.w || py < area.y || py > area.y + area.h) continue;
    const dataX = axis.fromX(px), dataY = axis.fromY(py);
    const custom = index => {
      if (!trace._custom) return undefined;
      const {values, shape} = trace._custom, depth = shape.slice(index.length).reduce((a, b) => a * b, 1);
      const at = index.reduce((offset, i, k) => offset * shape[k] + i, 0) * depth;
      return depth === 1 ? values[at] : Array.from(values.slice(at, at + depth));
    };
    let values;
    if (trace.type === "heatmap") {
      const [h, w] = trace._z.shape, x0 = trace.x0 ?? 0, dx = trace.dx ?? 1, y0 = trace.y0 ?? 0, dy = trace.dy ?? 1;
      const j = Math.floor((dataX - (x0 - dx / 2)) / dx), i = Math.floor((dataY - (y0 - dy / 2)) / dy);
      if (i < 0 || j < 0 || i >= h || j >= w || !Number.isFinite(trace._z.values[i * w + j])) continue;
      values = {x: x0 + j * dx, y: y0 + i * dy, z: trace._z.values[i * w + j], customdata: custom([i, j])};
    } else {
      const xs = trace._x.values, ys = trace._y.values;
      let best = -1;
      for (let k = 0; k < xs.length; k++) {
        if (best < 0 || Math.abs(xs[k] - dataX) < Math.abs(xs[best] - dataX)) best = k;
      }
      if (best < 0 || Math.abs(axis.toX(xs[best]) - px) > Math.max(8, axis.area.w / xs.length)) continue;
      values = {x: xs[best], y: ys[best], customdata: custom([best])};
    }
    return fillTemplate(trace.hovertemplate, name => {
      if (name === "fullData.name") return trace.name || "";
      const part = /^customdata\[(\d+)\]$/.exec(name);
      if (part) return Array.isArray(values.customdata) ? values.customdata[+part[1]] : undefined;
      return values[name];
    });
  }
  return null;
}

async function render(root, payload) {
  const token = (root._token = (root._token || 0) + 1);
  const figure = await prepare(JSON.parse(JSON.stringify(payload.figure)));
  if (token !== root._token) return;  // a newer figure arrived meanwhile
  root._figure = figure;
  root._version = payload.version;
  root._zoom = new Map();
  const layout = figure.layout;
  root.dataset.title = plain((layout.title && layout.title.text) || "").replace(/\n/g, "<br>");
  root.dataset.image = (layout.meta && layout.meta.image) || "";
  redraw(root);
}

function redraw(root) {
  if (!root._figure || !root.clientWidth) return;
  const {placed, drawn} = draw(root, root._figure);
  root._placed = placed;
  root._drawn = drawn;  // what was drawn where, for tests
  root.dataset.drawn = root._version;
  root._width = root.clientWidth;
}

function mount(parent) {
  const root = document.createElement("div");
  root.className = "fmw-figure";
  root._zoom = new Map();
  root.style.position = "relative";
  root.style.width = "100%";
  const canvas = document.createElement("canvas");
  canvas.style.width = "100%";
  canvas.style.display = "block";
  const tip = document.createElement("div");
  tip.className = "fmw-figure-hover";
  tip.style.cssText = "position:absolute;display:none;pointer-events:none;background:rgba(255,255,255,0.95);" +
    "border:1px solid #bbb;border-radius:3px;padding:2px 5px;font:11px sans-serif;white-space:pre;z-index:2";
  root.append(canvas, tip);
  canvas.addEventListener("mousemove", event => {
    if (!root._placed) return;
    const bounds = canvas.getBoundingClientRect();
    const px = event.clientX - bounds.left, py = event.clientY - bounds.top;
    const text = hoverText(root._figure, root._placed, px, py);
    tip.style.display = text ? "block" : "none";
    if (text) {
      tip.textContent = text;
      tip.style.left = `${Math.min(px + 12, Math.max(0, root.clientWidth - tip.offsetWidth))}px`;
      tip.style.top = `${py + 12}px`;
    }
  });
  canvas.addEventListener("mouseleave", () => { tip.style.display = "none"; });
  // zoom as plotly's default drag does: a box dragged on a pair of axes shows that part; a double
  // click shows all of it again (a new figure starts unzoomed)
  const box = document.createElement("div");
  box.style.cssText = "position:absolute;display:none;pointer-events:none;border:1px dashed #555;background:rgba(80,80,80,0.1)";
  root.appendChild(box);
  const point = event => {
    const bounds = canvas.getBoundingClientRect();
    return [event.clientX - bounds.left, event.clientY - bounds.top];
  };
  const axisAt = (px, py) => root._placed && [...root._placed.axes.values()].find(({area}) =>
    px >= area.x && px <= area.x + area.w && py >= area.y && py <= area.y + area.h);
  let drag = null;  // the window hears the pointer only while a box is dragged
  const follow = event => {
    const [px, py] = point(event), {area} = drag.axis;
    const x = Math.min(Math.max(px, area.x), area.x + area.w), y = Math.min(Math.max(py, area.y), area.y + area.h);
    Object.assign(box.style, {display: "block", left: `${Math.min(x, drag.px)}px`, top: `${Math.min(y, drag.py)}px`,
      width: `${Math.abs(x - drag.px)}px`, height: `${Math.abs(y - drag.py)}px`});
    drag.x = x;
    drag.y = y;
  };
  const release = () => {
    window.removeEventListener("mousemove", follow);
    window.removeEventListener("mouseup", release);
    const {axis, px, py, x, y} = drag;
    drag = null;
    box.style.display = "none";
    if (x === undefined || Math.abs(x - px) < 5 || Math.abs(y - py) < 5) return;
    const xs = [axis.fromX(px), axis.fromX(x)].sort((a, b) => a - b);
    const ys = [axis.fromY(py), axis.fromY(y)].sort((a, b) => a - b);
    root._zoom.set(axis.key, {xr: xs, yr: ys});
    redraw(root);
  };
  canvas.addEventListener("mousedown", event => {
    const [px, py] = point(event), axis = axisAt(px, py);
    if (!axis || drag) return;
    event.preventDefault();  // no text selection while dragging
    drag = {axis, px, py};
    window.addEventListener("mousemove", follow);
    window.addEventListener("mouseup", release);
  });
  canvas.addEventListener("dblclick", () => {
    root._zoom.clear();
    redraw(root);
  });
  root._observer = new ResizeObserver(() => {
    if (root.clientWidth !== root._width) requestAnimationFrame(() => redraw(root));
  });
  root._observer.observe(root);
  parent.appendChild(root);
  return root;
}

export default function (component) {
  const {data, parentElement} = component;
  const root = parentElement.querySelector(":scope > .fmw-figure") || mount(parentElement);
  root.dataset.version = data.version;
  if (root._requested !== data.version) {
    root._requested = data.version;
    render(root, data);
  }
  return () => {
    if (!parentElement.isConnected && root._observer) root._observer.disconnect();
  };
}
