// A merge request's review comments -> comment threads on the modified side of its diff. Pure: the
// controller in reviewComments.ts turns these into VS Code comment threads.
import type { Review } from "../protocol";

export interface ReviewThread {
  /** 0-based line of the file's new version (a comment without a line sits on the first). */
  line: number;
  author: string;
  body: string;
  /** Shown on the thread: which review and its verdict. */
  label: string;
}

/** Every comment of every review of the merge request on ``path``, oldest review first. */
export function reviewThreads(reviews: readonly Review[] | undefined, path: string): ReviewThread[] {
  const threads: ReviewThread[] = [];
  for (const r of reviews ?? []) {
    const verdict = r.verdict === "approve" ? "approved" : "changes requested";
    for (const c of r.comments) {
      if (c.path !== path) continue;
      threads.push({
        line: Math.max((c.line ?? 1) - 1, 0),
        author: "Stoneforge steward",
        body: c.body,
        label: `Review ${r.round}: ${verdict}`,
      });
    }
  }
  return threads;
}

/** The first commented file of a review (to open its diff at the comment), if any. */
export function firstCommented(review: Review): { path: string; line: number } | undefined {
  const c = review.comments[0];
  return c ? { path: c.path, line: Math.max((c.line ?? 1) - 1, 0) } : undefined;
}
