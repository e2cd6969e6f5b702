// The gzoo leaderboard page: sort by any column (aria-sort tells screen readers which), filter by task and method.
(() => {
  "use strict";
  const table = document.getElementById("board");
  const body = table.tBodies[0];
  const headers = Array.from(table.tHead.rows[0].cells);
  const rows = Array.from(body.rows);
  const order = new Map(rows.map((row, i) => [row, i]));
  const sign = (x) => (x > 0) - (x < 0);

  function compare(a, b, index, numeric) {
    const first = a.cells[index].dataset;
    const second = b.cells[index].dataset;
    const group = (first.group || "").localeCompare(second.group || "");
    if (group) return group;  // e.g. the reported column: all FIDs together, then all mIoUs
    if (numeric) return sign(Number(first.sort) - Number(second.sort)) || 0;
    return first.sort.localeCompare(second.sort, undefined, { numeric: true });
  }

  function sortBy(index) {
    const header = headers[index];
    const direction = header.getAttribute("aria-sort") === "ascending" ? "descending" : "ascending";
    headers.forEach((h) => h.removeAttribute("aria-sort"));
    header.setAttribute("aria-sort", direction);
    const numeric = header.dataset.type === "number";
    const towards = direction === "ascending" ? 1 : -1;
    const sorted = rows.slice().sort((a, b) => {
      const blankA = !a.cells[index].dataset.sort;
      const blankB = !b.cells[index].dataset.sort;
      if (blankA !== blankB) return blankA ? 1 : -1;  // cells without a number go last either way
      return (blankA ? 0 : towards * compare(a, b, index, numeric)) || order.get(a) - order.get(b);
    });
    body.append(...sorted);
  }

  headers.forEach((header, index) => {
    header.querySelector("button").addEventListener("click", () => sortBy(index));
  });

  const task = document.getElementById("filter-task");
  const method = document.getElementById("filter-method");
  const shown = document.getElementById("shown");

  function filter() {
    let visible = 0;
    for (const row of rows) {
      const show = (!task.value || row.dataset.task === task.value) &&
        (!method.value || row.dataset.method === method.value);
      row.hidden = !show;
      visible += show;
    }
    shown.value = `${visible} of ${rows.length} rows`;
    document.querySelectorAll("figure.plot").forEach((figure) => {
      figure.hidden = Boolean(task.value) && figure.dataset.task !== task.value;
    });
  }

  task.addEventListener("change", filter);
  method.addEventListener("change", filter);
  task.form.addEventListener("submit", (event) => event.preventDefault());
  filter();  // a browser may restore the selects' values on reload
})();
