// Copy buttons: <button data-copy-target="ID" hidden> copies the text of the element ID.
// A file of its own, as the Content-Security-Policy forbids inline script. Without
// JavaScript (or without a clipboard) the button stays hidden and the text stays
// selectable; when copying fails, the text is selected for Ctrl+C instead.
(function () {
  "use strict";

  function selectText(element) {
    var range = document.createRange();
    range.selectNodeContents(element);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  function say(button, text) {
    var status = button.parentElement.querySelector("[data-copy-status]");
    if (status) status.textContent = text;
  }

  function copy(button) {
    var source = document.getElementById(button.dataset.copyTarget);
    if (!source) return;
    navigator.clipboard.writeText(source.textContent.trim()).then(
      function () { say(button, "Copied."); },
      function () {
        selectText(source);
        say(button, "Could not copy: it is selected, press Ctrl+C (⌘C).");
      }
    );
  }

  document.addEventListener("DOMContentLoaded", function () {
    if (!navigator.clipboard || !window.isSecureContext) return;
    document.querySelectorAll("button[data-copy-target]").forEach(function (button) {
      button.hidden = false;
      button.addEventListener("click", function () { copy(button); });
    });
  });
})();
