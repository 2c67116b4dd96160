export * from './config.js';
export * from './descriptor.js';
export * from './manifest.js';
export * from './mediatype.js';
