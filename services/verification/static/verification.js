// Shows, while the issue date is typed, until when the certificate is in date.
// The page works the same without it: the server says so once it is recorded.
(function () {
  var p = document.querySelector("[data-print]");
  if (p) p.addEventListener("click", function () { window.print(); });
  var input = document.getElementById("f-issued_on"), out = document.getElementById("validity");
  if (!input || !out) return;
  function show() {
    var v = input.value, days = +input.dataset.validDays;
    if (!/^\d{4}-\d{2}-\d{2}$/.test(v)) { out.textContent = ""; out.className = ""; return; }
    var until = new Date(v + "T00:00:00Z"); until.setUTCDate(until.getUTCDate() + days);
    var iso = until.toISOString().slice(0, 10), ok = iso >= input.dataset.today && v <= input.dataset.today;
    out.textContent = (ok ? input.dataset.in : input.dataset.out).replace("{date}", iso.split("-").reverse().join("."));
    out.className = "badge " + (ok ? "ok" : "bad");
  }
  input.addEventListener("input", show); show();
})();
