/**
 * Function URL invocations: the request's method and path (the part after
 * the function's name) and the status the caller was answered with.
 */
export const migration = {
  version: 4,
  name: 'http-request',
  up: `
    ALTER TABLE invocations ADD COLUMN http_method TEXT;
    ALTER TABLE invocations ADD COLUMN http_path TEXT;
    ALTER TABLE invocations ADD COLUMN http_status INTEGER;
  `,
};
