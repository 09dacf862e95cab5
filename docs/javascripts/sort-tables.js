// Sortable tables, written for this site (no CDN, no third-party code; MIT like the project).
// Click a column header to sort its table by that column, again to reverse. Cells are compared
// as numbers when both start with one ("99.26 ± 0.32", "113,026", "0.0009869"), else as text.
(function () {
  function key(cell) {
    var text = cell.textContent.trim();
    var number = parseFloat(text.replace(/,/g, ""));
    return isNaN(number) ? text.toLowerCase() : number;
  }

  function compare(a, b) {
    if (typeof a === typeof b) return a < b ? -1 : a > b ? 1 : 0;
    return typeof a === "number" ? -1 : 1;  // numbers before text ("-", blanks)
  }

  function makeSortable(table) {
    if (!table.tHead || table.dataset.sortable) return;
    table.dataset.sortable = "yes";
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (header, column) {
      header.style.cursor = "pointer";
      header.title = "sort by this column";
      header.addEventListener("click", function () {
        var body = table.tBodies[0];
        var descending = header.dataset.order === "ascending";
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (r, s) {
          var order = compare(key(r.cells[column]), key(s.cells[column]));
          return descending ? -order : order;
        });
        rows.forEach(function (row) { body.appendChild(row); });
        Array.prototype.forEach.call(table.tHead.rows[0].cells, function (h) { delete h.dataset.order; });
        header.dataset.order = descending ? "descending" : "ascending";
      });
    });
  }

  function sortAll() {
    document.querySelectorAll("article table").forEach(makeSortable);
  }

  if (typeof document$ !== "undefined") {
    document$.subscribe(sortAll);  // Material's page-load observable (instant navigation too)
  } else {
    document.addEventListener("DOMContentLoaded", sortAll);
  }
})();
