// A CommonJS handler that returns its event: the benchmark's function.
exports.handler = async (event) => event;
