import { en, type Texts } from "./en";
import { fr } from "./fr";

/** The languages of the interface; the choice is kept in localStorage, else the browser's. */
export const LANGUAGES: Record<string, { name: string; texts: Texts }> = {
  en: { name: "English", texts: en },
  fr: { name: "Français", texts: fr },
};
const KEY = "pacs-gateway.lang";

export function chooseLanguage(stored: string | null, browser: string | undefined): string {
  if (stored && stored in LANGUAGES) return stored;
  const short = (browser ?? "en").slice(0, 2).toLowerCase();
  return short in LANGUAGES ? short : "en";
}

function stored(): string | null {
  try {
    return window.localStorage.getItem(KEY);
  } catch {
    return null;
  }
}

export const lang = chooseLanguage(stored(), typeof navigator === "undefined" ? undefined : navigator.language);

/** The texts of the interface in the chosen language (English by default). */
export const t: Texts = LANGUAGES[lang].texts;

/** Keep `code` as the language and reload the page in it. */
export function setLanguage(code: string): void {
  window.localStorage.setItem(KEY, code);
  window.location.reload();
}
