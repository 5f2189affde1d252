// The cube viewer: the cube's tiles on a MapLibre map, a period slider, function and band selectors,
// and a click-to-chart pixel time series. Everything it loads comes from this app:
//   /maps/collections                       the products (cube products carry `cube` and `kind`)
//   /maps/collections/{id}/layout           tile outlines, periods and dates, bands and combinations
//   /maps/mosaic/{id}/tiles/{z}/{x}/{y}.png the tiles of one product and period (or date)
//   /timeseries                             the pixel's values per period and per merge date
"use strict";

(function () {
  const el = (id) => document.getElementById(id);
  const state = {
    cubes: {},          // cube name -> [kind, ...]
    cube: null,
    fn: null,
    selection: "true-colour",
    periodIndex: 0,
    date: "",
    layout: null,       // layout of the composite product
    mergeLayout: null,  // layout of the merge product (dates per period)
    series: null,
    idle: 0,
  };

  async function getJSON(url) {
    const response = await fetch(url);
    if (!response.ok) throw new Error(`${url}: ${response.status} ${await response.text()}`);
    return response.json();
  }

  function status(text) { el("status").textContent = text; }

  const map = new maplibregl.Map({
    container: "map",
    style: {
      version: 8,
      sources: {},
      layers: [{ id: "background", type: "background", paint: { "background-color": "#20252b" } }],
    },
    center: [0, 0],
    zoom: 1,
    attributionControl: false,
    canvasContextAttributes: { preserveDrawingBuffer: true },
    preserveDrawingBuffer: true,
  });
  map.addControl(new maplibregl.NavigationControl({ showCompass: false }));
  map.on("idle", () => { state.idle += 1; document.body.dataset.idle = String(state.idle); });

  function product(kind) { return `${state.cube}-${kind}`; }
  function period() { return state.layout ? state.layout.periods[state.periodIndex] : null; }

  function selectionBands(layout) {
    if (!layout) return [];
    if (layout.combinations[state.selection]) return layout.combinations[state.selection];
    return layout.bands.some((b) => b.name === state.selection) ? [state.selection] : [];
  }

  function bandQuery(layout) {
    if (layout.combinations[state.selection]) return `combination=${encodeURIComponent(state.selection)}`;
    if (layout.bands.some((b) => b.name === state.selection)) return `bands=${encodeURIComponent(state.selection)}`;
    return "combination=true-colour";
  }

  function tileUrl() {
    const p = period();
    if (!p) return null;
    if (state.date && state.mergeLayout) {
      return `${location.origin}/maps/mosaic/${encodeURIComponent(product("merge"))}/tiles/{z}/{x}/{y}.png` +
        `?date=${state.date}&${bandQuery(state.mergeLayout)}`;
    }
    return `${location.origin}/maps/mosaic/${encodeURIComponent(product(state.fn))}/tiles/{z}/{x}/{y}.png` +
      `?period=${p.start}&${bandQuery(state.layout)}`;
  }

  function showTiles() {
    const url = tileUrl();
    if (!url) return;
    const source = map.getSource("cube");
    if (source) {
      source.setTiles([url]);
    } else {
      map.addSource("cube", { type: "raster", tiles: [url], tileSize: 256, minzoom: 0, maxzoom: 22 });
      map.addLayer({ id: "cube", type: "raster", source: "cube", paint: { "raster-resampling": "nearest" } }, map.getLayer("footprints") ? "footprints" : undefined);
    }
    document.body.dataset.tiles = url;
  }

  function showOutlines() {
    const data = state.layout.tiles;
    if (map.getSource("tiles")) { map.getSource("tiles").setData(data); return; }
    map.addSource("tiles", { type: "geojson", data });
    map.addLayer({ id: "footprints", type: "fill", source: "tiles", paint: { "fill-color": "#ffffff", "fill-opacity": 0.04 } });
    map.addLayer({ id: "outlines", type: "line", source: "tiles", paint: { "line-color": "#f5c542", "line-width": 1.5 } });
  }

  function fillSelect(select, options, value) {
    select.innerHTML = "";
    for (const [optionValue, label] of options) {
      const option = document.createElement("option");
      option.value = optionValue;
      option.textContent = label;
      select.appendChild(option);
    }
    if (value !== undefined && options.some(([v]) => v === value)) select.value = value;
  }

  function fillPeriod() {
    const slider = el("period");
    slider.max = String(Math.max(0, state.layout.periods.length - 1));
    state.periodIndex = Math.min(state.periodIndex, state.layout.periods.length - 1);
    slider.value = String(state.periodIndex);
    const p = period();
    el("period-label").textContent = p ? `${p.start} – ${p.end || p.start}` : "no period";
    const merges = state.mergeLayout ? state.mergeLayout.periods.find((m) => m.start === (p && p.start)) : null;
    const dates = merges ? merges.dates : [];
    fillSelect(el("date"), [["", "composite of the period"], ...dates.map((d) => [d, `merge of ${d}`])], state.date);
    if (!dates.includes(state.date)) state.date = "";
  }

  function fillSelections() {
    const options = Object.keys(state.layout.combinations).map((name) => [name, name]);
    for (const band of state.layout.bands) {
      if (band.type === "generic" && band.name !== "DATASOURCE") options.push([band.name, band.name]);
    }
    fillSelect(el("combination"), options, state.selection);
    state.selection = el("combination").value;
  }

  async function loadCube() {
    status("loading…");
    const kinds = state.cubes[state.cube];
    fillSelect(el("function"), kinds.filter((k) => k !== "merge").map((k) => [k, k]), state.fn || "LCF");
    state.fn = el("function").value;
    state.layout = await getJSON(`/maps/collections/${encodeURIComponent(product(state.fn))}/layout`);
    state.mergeLayout = kinds.includes("merge")
      ? await getJSON(`/maps/collections/${encodeURIComponent(product("merge"))}/layout`)
      : null;
    fillSelections();
    fillPeriod();
    showOutlines();
    showTiles();
    if (state.layout.bbox) map.fitBounds(state.layout.bbox, { padding: 30, animate: false });
    status(`${state.layout.periods.length} periods, ${state.layout.tiles.features.length} tiles`);
  }

  // ------------------------------------------------------------------ the chart

  async function loadSeries(lngLat) {
    const bands = selectionBands(state.layout);
    if (!bands.length) return;
    const where = `lon=${lngLat.lng.toFixed(7)}&lat=${lngLat.lat.toFixed(7)}`;
    const composite = await getJSON(`/timeseries?collection=${encodeURIComponent(product(state.fn))}&bands=${bands.join(",")}&${where}`);
    let merges = { values: [] };
    const mergeBands = state.mergeLayout ? bands.filter((b) => state.mergeLayout.bands.some((m) => m.name === b)) : [];
    if (mergeBands.length === bands.length) {
      merges = await getJSON(`/timeseries?collection=${encodeURIComponent(product("merge"))}&bands=${bands.join(",")}&${where}`);
    }
    state.series = { bands, composite: composite.values, merges: merges.values, lngLat };
    drawChart();
    listItems();
  }

  const BAND_COLOURS = ["#c0392b", "#2e9d3a", "#1f5fbf"];

  function drawChart() {
    const canvas = el("chart");
    const ctx = canvas.getContext("2d");
    const { bands, composite, merges } = state.series;
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    const left = 52, right = canvas.width - 10, top = 12, bottom = canvas.height - 28;
    const times = [...composite, ...merges].map((v) => Date.parse(v.acquired));
    const ends = composite.map((v) => Date.parse(v.acquired_end || v.acquired));
    const values = [...composite, ...merges].flatMap((v) => bands.map((b) => v.physical[b])).filter((v) => v !== null);
    canvas.dataset.compositePoints = String(composite.length);
    canvas.dataset.mergePoints = String(merges.length);
    if (!times.length) {
      ctx.fillStyle = "#666";
      ctx.fillText("no image under this point", left, top + 20);
      return;
    }
    const t0 = Math.min(...times), t1 = Math.max(...times, ...ends);
    let v0 = values.length ? Math.min(...values) : 0, v1 = values.length ? Math.max(...values) : 1;
    if (v1 <= v0) { v1 = v0 + 1; }
    const pad = (v1 - v0) * 0.08; v0 -= pad; v1 += pad;
    const x = (t) => left + (right - left) * (t1 > t0 ? (t - t0) / (t1 - t0) : 0.5);
    const y = (v) => bottom - (bottom - top) * (v - v0) / (v1 - v0);
    // axes
    ctx.strokeStyle = "#999"; ctx.lineWidth = 1; ctx.fillStyle = "#444"; ctx.font = "11px system-ui";
    ctx.beginPath(); ctx.moveTo(left, top); ctx.lineTo(left, bottom); ctx.lineTo(right, bottom); ctx.stroke();
    for (let i = 0; i <= 4; i++) {
      const v = v0 + (v1 - v0) * i / 4;
      ctx.fillText(v.toFixed(3), 4, y(v) + 4);
    }
    ctx.fillText(new Date(t0).toISOString().slice(0, 10), left, canvas.height - 8);
    ctx.fillText(new Date(t1).toISOString().slice(0, 10), right - 62, canvas.height - 8);
    bands.forEach((band, bandIndex) => {
      const colour = bands.length === 3 ? BAND_COLOURS[bandIndex] : "#1f5fbf";
      // merges: filled squares when clear, hollow red squares when cloudy or missing
      for (const m of merges) {
        const value = m.physical[band];
        const px = x(Date.parse(m.acquired)), py = value === null ? bottom - 4 : y(value);
        if (m.flags.clear) { ctx.fillStyle = bands.length === 3 ? colour : "#2e9d3a"; ctx.fillRect(px - 3, py - 3, 6, 6); }
        else { ctx.strokeStyle = "#c0392b"; ctx.lineWidth = 1.5; ctx.strokeRect(px - 3, py - 3, 6, 6); }
      }
      // composites: a line over the period and a circle at its middle; LCF provenance to its merge date
      for (const c of composite) {
        const value = c.physical[band];
        if (value === null) continue;
        const start = Date.parse(c.acquired), end = Date.parse(c.acquired_end || c.acquired);
        ctx.strokeStyle = colour; ctx.lineWidth = 2;
        ctx.beginPath(); ctx.moveTo(x(start), y(value)); ctx.lineTo(x(end), y(value)); ctx.stroke();
        if (c.flags.provenance_date) {
          const source = Date.parse(c.flags.provenance_date + "T12:00:00Z");
          ctx.strokeStyle = "#e0a000"; ctx.lineWidth = 3;
          ctx.beginPath(); ctx.moveTo(x(source), y(value) - 6); ctx.lineTo(x(source), y(value) + 6); ctx.stroke();
        }
        ctx.fillStyle = colour;
        ctx.beginPath(); ctx.arc(x((start + end) / 2), y(value), 4, 0, 2 * Math.PI); ctx.fill();
      }
    });
    ctx.fillStyle = "#222";
    ctx.fillText(bands.join(", "), left + 6, top + 10);
  }

  function listItems() {
    const list = el("series-items");
    list.innerHTML = "";
    const { bands, composite, merges } = state.series;
    for (const value of [...composite, ...merges].sort((a, b) => a.acquired.localeCompare(b.acquired))) {
      const item = document.createElement("li");
      const link = document.createElement("a");
      link.href = value.item;
      link.textContent = value.image_id;
      item.appendChild(link);
      const numbers = bands.map((b) => `${b} ${value.physical[b] === null ? "–" : value.physical[b].toFixed(4)}`).join(", ");
      const flags = value.flags.clear === null ? "" : value.flags.clear ? " clear" : " cloudy";
      const source = value.flags.provenance_date ? ` (LCF from ${value.flags.provenance_date})` : "";
      item.appendChild(document.createTextNode(`: ${numbers}${flags}${source}`));
      list.appendChild(item);
    }
  }

  // ------------------------------------------------------------------ wiring

  el("cube").addEventListener("change", () => { state.cube = el("cube").value; loadCube().catch(fail); });
  el("function").addEventListener("change", () => { state.fn = el("function").value; loadCube().catch(fail); });
  el("combination").addEventListener("change", () => { state.selection = el("combination").value; showTiles(); });
  el("period").addEventListener("input", () => { state.periodIndex = Number(el("period").value); state.date = ""; fillPeriod(); showTiles(); });
  el("date").addEventListener("change", () => { state.date = el("date").value; showTiles(); });
  map.on("click", (event) => { loadSeries(event.lngLat).catch(fail); });

  function fail(error) { status(String(error.message || error)); console.error(error); }

  const ready = new Promise((resolve, reject) => {
    map.on("load", async () => {
      try {
        const products = await getJSON("/maps/collections");
        for (const p of products) {
          if (!p.cube) continue;
          (state.cubes[p.cube] = state.cubes[p.cube] || []).push(p.kind);
        }
        const names = Object.keys(state.cubes).sort();
        if (!names.length) { status("no cube in the catalog yet: run `cube-assets demo`"); resolve(); return; }
        fillSelect(el("cube"), names.map((n) => [n, n]));
        state.cube = names[0];
        await loadCube();
        resolve();
      } catch (error) { fail(error); reject(error); }
    });
  });

  window.cubeViewer = { map, state, ready };
})();
