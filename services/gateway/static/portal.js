// Progressive enhancement only: every form works without it. Narrows the
// district and settlement lists to the chosen region and district.
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("select[data-parent]").forEach(function (child) {
    var parent = document.getElementById(child.dataset.parent);
    if (!parent) return;
    function narrow() {
      var chosen = parent.value;
      child.querySelectorAll("optgroup").forEach(function (group) {
        var show = !chosen || group.dataset.parentValue === chosen;
        group.hidden = !show;
        group.disabled = !show;
      });
      var sel = child.selectedOptions[0];
      if (sel && sel.parentElement.tagName === "OPTGROUP" && sel.parentElement.disabled) {
        // Districts of one city share its settlement: keep the value, in the group now shown.
        var same = child.querySelector('optgroup:not([disabled]) option[value="' + CSS.escape(sel.value) + '"]');
        if (same) same.selected = true; else child.value = "";
      }
      child.dispatchEvent(new Event("narrowed"));
    }
    parent.addEventListener("change", narrow);
    parent.addEventListener("narrowed", narrow);
    narrow();
  });
  var summary = document.getElementById("error-summary");
  if (summary) summary.focus();
});
