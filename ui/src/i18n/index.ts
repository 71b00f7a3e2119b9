import { en } from "./en";

/** The texts of the interface (English; the one place a translation would be chosen). */
export const t = en;
