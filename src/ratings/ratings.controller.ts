import { Body, Controller, Get, Param, Post, Res } from '@nestjs/common';
import { ApiBody, ApiCreatedResponse, ApiOkResponse, ApiOperation, ApiParam, ApiResponse, ApiTags } from '@nestjs/swagger';
import type { Response } from 'express';
import { RequireScope } from '../auth/require-scope.decorator';
import { ApiProtected, apiError } from '../common/api-docs';
import { Acting, ActingContext } from '../common/request-context';
import { RateExchangeDto, RatingView } from './ratings.dto';
import { RatingsService } from './ratings.service';
import { RatingResponse } from './ratings.responses';

const RATING_EXAMPLE: RatingView = {
  request_id: 'req_Xk3v9QmT2bLp8WzR4nYc7HdA',
  response_id: 'resp_67ccd2bed1ec8190b14f964abc054267',
  user_id: 'user@example.com',
  rating: 5,
  comment: null,
  rated_at: '2026-06-05T18:30:00.000Z',
};
const rated = { type: RatingResponse, example: RATING_EXAMPLE };
const RATE_BODY = { type: RateExchangeDto, examples: { rating: { value: { rating: 5, comment: 'Solved my problem' } } } };
const notFound = apiError(404, 'Unknown exchange (or one of another organization), or no rating of yours', 'not_found_error', 'not_found', "No request found with id 'req_…'");
const invalid = apiError(400, 'rating is not a JSON integer from 1 to 5, or comment is too long', 'invalid_request_error', null, 'rating must be an integer from 1 to 5', 'rating');

@ApiTags('ratings')
@ApiProtected()
@RequireScope('proxy')
@Controller('v1')
export class RatingsController {
  constructor(private readonly ratings: RatingsService) {}

  @Post('requests/:request_id/rating')
  @ApiOperation({ summary: 'Rate an exchange by its request id (rating again replaces your earlier rating)' })
  @ApiParam({ name: 'request_id', example: RATING_EXAMPLE.request_id })
  @ApiBody(RATE_BODY)
  @ApiCreatedResponse({ description: 'first rating of this exchange by you', ...rated })
  @ApiOkResponse({ description: 'your earlier rating was replaced', ...rated })
  @ApiResponse(invalid)
  @ApiResponse(notFound)
  rateRequest(
    @Acting() acting: ActingContext,
    @Param('request_id') requestId: string,
    @Body() body: RateExchangeDto,
    @Res({ passthrough: true }) res: Response,
  ): Promise<RatingView> {
    return this.answer(res, this.ratings.rate(acting, { requestId }, body));
  }

  @Post('responses/:response_id/rating')
  @ApiOperation({ summary: 'Rate an exchange by its upstream response id (rating again replaces your earlier rating)' })
  @ApiParam({ name: 'response_id', example: RATING_EXAMPLE.response_id })
  @ApiBody(RATE_BODY)
  @ApiCreatedResponse({ description: 'first rating of this exchange by you', ...rated })
  @ApiOkResponse({ description: 'your earlier rating was replaced', ...rated })
  @ApiResponse(invalid)
  @ApiResponse(notFound)
  rateResponse(
    @Acting() acting: ActingContext,
    @Param('response_id') responseId: string,
    @Body() body: RateExchangeDto,
    @Res({ passthrough: true }) res: Response,
  ): Promise<RatingView> {
    return this.answer(res, this.ratings.rate(acting, { responseId }, body));
  }

  @Get('requests/:request_id/rating')
  @ApiOperation({ summary: 'Your rating of an exchange, by request id' })
  @ApiOkResponse(rated)
  @ApiResponse(notFound)
  getForRequest(@Acting() acting: ActingContext, @Param('request_id') requestId: string): Promise<RatingView> {
    return this.ratings.get(acting, { requestId });
  }

  @Get('responses/:response_id/rating')
  @ApiOperation({ summary: 'Your rating of an exchange, by response id' })
  @ApiOkResponse(rated)
  @ApiResponse(notFound)
  getForResponse(@Acting() acting: ActingContext, @Param('response_id') responseId: string): Promise<RatingView> {
    return this.ratings.get(acting, { responseId });
  }

  private async answer(res: Response, pending: Promise<{ created: boolean; rating: RatingView }>): Promise<RatingView> {
    const { created, rating } = await pending;
    res.status(created ? 201 : 200);
    return rating;
  }
}
