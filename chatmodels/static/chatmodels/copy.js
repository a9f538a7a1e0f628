// "Copy" buttons (the version page's curl command, a new API key): copy the text of the element
// named by data-copy-target.
"use strict";

document.addEventListener("click", async (event) => {
  const button = event.target.closest("button.cm-copy");
  if (!button) return;
  const source = document.getElementById(button.dataset.copyTarget);
  if (!source) return;
  const text = source.textContent;
  try {
    await navigator.clipboard.writeText(text);
  } catch (error) {
    // Clipboard API unavailable (plain http): select the text so Ctrl+C works.
    const range = document.createRange();
    range.selectNodeContents(source);
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    button.textContent = "Press Ctrl+C";
    return;
  }
  button.textContent = "Copied";
  setTimeout(() => {
    button.textContent = "Copy";
  }, 1500);
});
