// Building the DOM without HTML strings: text goes in as text, so nothing the API returns can run as
// markup (the page's Content-Security-Policy also locks innerHTML with Trusted Types).

export function $(id) {
  return document.getElementById(id);
}

/** h("li", {class: "offer", "aria-labelledby": id}, child, "text", ...) -> Element */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k === "on") for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
    else if (k === "hidden") el.hidden = true;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function show(el, visible) {
  el.hidden = !visible;
}

export function setText(el, text) {
  el.textContent = text ?? "";
  el.hidden = !text;
}
