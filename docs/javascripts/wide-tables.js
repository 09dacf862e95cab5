// Tables wider than the page: the theme lets them scroll sideways inside the content column;
// this says so above each such table, so that no column goes unseen (written for this site, MIT
// like the project). A table that fits gets no note; the note follows window resizes.
(function () {
  var NOTE = "wide-table-note";

  function mark(table) {
    var wrap = table.closest(".md-typeset__scrollwrap") || table;
    var note = wrap.previousElementSibling;
    var has = note && note.classList.contains(NOTE);
    var wide = wrap.scrollWidth > wrap.clientWidth + 1;
    table.dataset.scrolls = wide ? "yes" : "no";
    if (wide && !has) {
      note = document.createElement("p");
      note.className = NOTE;
      note.textContent = "\u2194 This table (" + table.tHead.rows[0].cells.length +
        " columns) is wider than the page: scroll it sideways to see every column.";
      wrap.parentNode.insertBefore(note, wrap);
    } else if (!wide && has) {
      note.remove();
    }
  }

  function markAll() {
    document.querySelectorAll("article table").forEach(function (table) {
      if (table.tHead) mark(table);
    });
  }

  if (typeof document$ !== "undefined") {
    document$.subscribe(markAll);  // Material's page-load observable (instant navigation too)
  } else {
    document.addEventListener("DOMContentLoaded", markAll);
  }
  window.addEventListener("resize", markAll);
})();
