import { githubClient } from '../github.js';

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
  // A missing release is an ordinary answer here; the caller logs what matters.
  const octokit = await githubClient(options.token, options.apiUrl);
  const find = (assets: { name: string; browser_download_url: string }[]) =>
    assets.find((asset) => asset.name === options.assetName)?.browser_download_url;
  try {
    const release = await octokit.rest.repos.getReleaseByTag({ owner, repo, tag: options.tag });
    const url = find(release.data.assets);
    if (url) return url;
  } catch (error: unknown) {
    if ((error as { status?: number }).status !== 404) throw error;
  }
  // `uses: owner/repo@v1` runs at a moving major tag that has no release of
  // its own; the asset name carries the recipe hash, so any recent release
  // that has it will do.
  const releases = await octokit.rest.repos.listReleases({ owner, repo, per_page: 30 });
  for (const release of releases.data) {
    const url = find(release.assets);
    if (url) return url;
  }
  return undefined;
}
