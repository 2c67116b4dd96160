import type { Octokit } from '@octokit/rest';

/**
 * A REST client for GITHUB_API_URL (github.com's API when unset, as outside
 * Actions), with no retries and no logging of its own: callers decide what a
 * failed call means and say it in their words. Loaded when first needed:
 * Octokit and its endpoint tables are a large part of the bundle, and most
 * `hyper` commands never call GitHub.
 */
export async function githubClient(token: string | undefined, apiUrl: string | undefined): Promise<Octokit> {
  const { Octokit } = await import('@octokit/rest');
  return new Octokit({
    auth: token,
    baseUrl: apiUrl || 'https://api.github.com',
    request: { retries: 0 },
    log: { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} },
  });
}
