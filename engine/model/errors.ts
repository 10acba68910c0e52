// Errors that reach the user. Their messages are shown as they are, so each one
// names what is wrong (the file, the field or tensor) and what to do about it.

// Base of every error caused by the user's input (a file, a setting) rather than
// by a bug in LoRA Studio. The UI shows `message` without a stack trace.
export class UserError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

// A model folder, config.json or weight file that LoRA Studio cannot load.
// `file` is the absolute path of the offending file (or folder) where there is
// one; `field` is the config field or tensor name at fault.
export class ModelLoadError extends UserError {
  constructor(
    message: string,
    readonly file?: string,
    readonly field?: string,
  ) {
    super(message);
  }
}
