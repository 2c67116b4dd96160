import { Octokit } from '@octokit/rest';

/**
 * A REST client for GITHUB_API_URL (github.com's API when unset, as outside
 * Actions), with no retries and no logging of its own: callers decide what a
 * failed call means and say it in their words.
 */
export function githubClient(token: string | undefined, apiUrl: string | undefined): Octokit {
  return new Octokit({
    auth: token,
    baseUrl: apiUrl || 'https://api.github.com',
    request: { retries: 0 },
    log: { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} },
  });
}
