/** How a container from this image is run: the `config` object of an image config. */
export interface ImageExecutionConfig {
  User?: string;
  ExposedPorts?: Record<string, Record<string, never>>;
  Env?: string[];
  Entrypoint?: string[] | null;
  Cmd?: string[] | null;
  Volumes?: Record<string, Record<string, never>>;
  WorkingDir?: string;
  Labels?: Record<string, string> | null;
  StopSignal?: string;
  ArgsEscaped?: boolean;
  /** Docker extension, absent from the OCI spec. Durations are in nanoseconds. */
  Healthcheck?: HealthcheckConfig;
  OnBuild?: string[] | null;
  Shell?: string[];
}

/** Docker's HEALTHCHECK: `Test` is ["NONE"], ["CMD", ...args] or ["CMD-SHELL", command]. */
export interface HealthcheckConfig {
  Test?: string[];
  Interval?: number;
  Timeout?: number;
  StartPeriod?: number;
  StartInterval?: number;
  Retries?: number;
}

export interface RootFs {
  type: 'layers' | string;
  diff_ids: string[];
}

export interface HistoryEntry {
  created?: string;
  created_by?: string;
  author?: string;
  comment?: string;
  empty_layer?: boolean;
}

/** The image config blob (OCI `application/vnd.oci.image.config.v1+json` or Docker's equivalent). */
export interface ImageConfig {
  created?: string;
  author?: string;
  architecture: string;
  os: string;
  variant?: string;
  'os.version'?: string;
  'os.features'?: string[];
  config?: ImageExecutionConfig;
  rootfs: RootFs;
  history?: HistoryEntry[];
}
