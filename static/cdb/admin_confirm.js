// A button with data-confirm asks before it submits its form (no inline onclick: Content-Security-Policy).
"use strict";
document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-confirm]");
  if (button && !window.confirm(button.dataset.confirm)) event.preventDefault();
});
