// A JavaScript (ESM) handler: greets whoever the event names.
export async function handler(event, context) {
  console.log(`greeting ${event.name ?? 'world'}`);
  return { message: `Hello, ${event.name ?? 'world'}!`, invocationId: context.invocationId };
}
