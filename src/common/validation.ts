import { ValidationError, ValidationPipe } from '@nestjs/common';
import { AppException } from './app-exception';

function firstError(errors: ValidationError[], prefix = ''): { param: string; message: string } | undefined {
  for (const e of errors) {
    const path = prefix ? `${prefix}.${e.property}` : e.property;
    if (e.constraints && Object.keys(e.constraints).length) {
      return { param: path, message: Object.values(e.constraints)[0] };
    }
    if (e.children?.length) {
      const child = firstError(e.children, /^\d+$/.test(e.property) && prefix ? `${prefix}[${e.property}]` : path);
      if (child) return child;
    }
  }
  return undefined;
}

/** class-validator for the proxy's own routes; the first failing field is reported in `param`. */
export function createValidationPipe(): ValidationPipe {
  return new ValidationPipe({
    whitelist: true,
    forbidNonWhitelisted: true,
    transform: true,
    transformOptions: { enableImplicitConversion: false },
    validateCustomDecorators: false,
    exceptionFactory: (errors) => {
      const first = firstError(errors);
      if (!first) return AppException.invalid('Invalid request body');
      const message = first.message.includes('should not exist')
        ? `Unknown field '${first.param}'`
        : first.message;
      return AppException.invalid(message, first.param);
    },
  });
}
