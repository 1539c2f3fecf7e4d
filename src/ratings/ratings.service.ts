import { Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { ExchangeRecorder } from '../exchanges/recorder/exchange-recorder.service';
import { AppException } from '../common/app-exception';
import { ActingContext } from '../common/request-context';
import { RateExchangeDto, RatingView } from './ratings.dto';

/** How a rating route names its exchange: by our `req_` id or by the upstream response id. */
export type ExchangeRef = { requestId: string } | { responseId: string };

interface ExchangeRow {
  id: string;
  response_id: string | null;
  persona_id: string | null;
}

interface RatingRow {
  rating: number;
  comment: string | null;
  rated_at: Date;
}

function toView(exchange: ExchangeRow, acting: ActingContext, r: RatingRow): RatingView {
  return {
    request_id: exchange.id,
    response_id: exchange.response_id,
    user_id: acting.externalUserId,
    rating: Number(r.rating),
    comment: r.comment,
    rated_at: new Date(r.rated_at).toISOString(),
  };
}

@Injectable()
export class RatingsService {
  constructor(
    private readonly dataSource: DataSource,
    private readonly recorder: ExchangeRecorder,
  ) {}

  /** One rating per exchange per user: a second one replaces the first (`created` tells which happened). */
  async rate(acting: ActingContext, ref: ExchangeRef, dto: RateExchangeDto): Promise<{ created: boolean; rating: RatingView }> {
    const exchange = await this.findExchange(acting.orgId, ref);
    // one statement, so two concurrent first ratings cannot both insert; xmax = 0 only on a freshly inserted row
    const rows: (RatingRow & { inserted: boolean })[] = await this.dataSource.query(
      `INSERT INTO ratings (organization_id, exchange_id, user_id, persona_id, rating, comment, rated_at)
       VALUES ($1, $2, $3, $4, $5, $6, now())
       ON CONFLICT (exchange_id, user_id) DO UPDATE
         SET rating = EXCLUDED.rating, comment = EXCLUDED.comment, rated_at = EXCLUDED.rated_at
       RETURNING rating, comment, rated_at, (xmax = 0) AS inserted`,
      [acting.orgId, exchange.id, acting.userId, exchange.persona_id, dto.rating, dto.comment ?? null],
    );
    return { created: rows[0].inserted, rating: toView(exchange, acting, rows[0]) };
  }

  /** The acting user's rating of the exchange. */
  async get(acting: ActingContext, ref: ExchangeRef): Promise<RatingView> {
    const exchange = await this.findExchange(acting.orgId, ref);
    const rows: RatingRow[] = await this.dataSource.query(
      'SELECT rating, comment, rated_at FROM ratings WHERE exchange_id = $1 AND user_id = $2',
      [exchange.id, acting.userId],
    );
    if (!rows.length) throw new AppException('not_found', `You have not rated the exchange '${exchange.id}'`, { code: 'rating_not_found' });
    return toView(exchange, acting, rows[0]);
  }

  /** Only within the acting organization: another organization's exchange is an unknown one. */
  private async findExchange(orgId: string, ref: ExchangeRef): Promise<ExchangeRow> {
    await this.recorder.caughtUp();
    const rows: ExchangeRow[] =
      'requestId' in ref
        ? await this.dataSource.query(
            'SELECT id, response_id, persona_id FROM exchanges WHERE id = $1 AND organization_id = $2',
            [ref.requestId, orgId],
          )
        : // a response id can be stored twice (e.g. an upstream that reuses ids); the newest exchange is the one rated
          await this.dataSource.query(
            `SELECT id, response_id, persona_id FROM exchanges
             WHERE organization_id = $1 AND response_id = $2 ORDER BY created_at DESC, id DESC LIMIT 1`,
            [orgId, ref.responseId],
          );
    if (!rows.length) {
      throw 'requestId' in ref ? AppException.notFound('request', ref.requestId) : AppException.notFound('response', ref.responseId);
    }
    return rows[0];
  }
}
