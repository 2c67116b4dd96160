import { Octokit } from '@octokit/rest';

/** Finds the download URL of a prebuilt guest bundle among a GitHub release's assets. */
export async function findReleaseAsset(options: {
  repository: string;
  tag: string;
  assetName: string;
  token?: string | undefined;
  apiUrl?: string | undefined;
}): Promise<string | undefined> {
  const [owner, repo] = options.repository.split('/');
  if (!owner || !repo) return undefined;
  const octokit = new Octokit({
    auth: options.token,
    baseUrl: options.apiUrl ?? 'https://api.github.com',
    request: { retries: 0 },
    // A missing release is an ordinary answer here; the caller logs what matters.
    log: { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} },
  });
  try {
    const release = await octokit.rest.repos.getReleaseByTag({ owner, repo, tag: options.tag });
    return release.data.assets.find((asset) => asset.name === options.assetName)?.browser_download_url;
  } catch (error: unknown) {
    if ((error as { status?: number }).status === 404) return undefined;
    throw error;
  }
}
