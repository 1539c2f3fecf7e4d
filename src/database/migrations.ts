import { InitialSchema1795488166900 } from '../../migrations/1795488166900-InitialSchema';
import { AddAnalyticsIndexes1795490000000 } from '../../migrations/1795490000000-AddAnalyticsIndexes';
import { AddLimits1795500000000 } from '../../migrations/1795500000000-AddLimits';
import { DropPersonaCreatedIndex1795510000000 } from '../../migrations/1795510000000-DropPersonaCreatedIndex';
import { WidenTokenCounters1795520000000 } from '../../migrations/1795520000000-WidenTokenCounters';
import { OrderCacheInvalidationsByTransaction1795520100000 } from '../../migrations/1795520100000-OrderCacheInvalidationsByTransaction';
import { AddAnalysisClaims1795520200000 } from '../../migrations/1795520200000-AddAnalysisClaims';
import { RecordFailedAnalyses1795520300000 } from '../../migrations/1795520300000-RecordFailedAnalyses';
import { AddLimitCountersTake1795523400000 } from '../../migrations/1795523400000-AddLimitCountersTake';
import { AddIssuedTokens1795777956120 } from '../../migrations/1795777956120-AddIssuedTokens';
import { RecordWholeApi1795800000000 } from '../../migrations/1795800000000-RecordWholeApi';
import { BillObjectsOnce1795800000100 } from '../../migrations/1795800000100-BillObjectsOnce';
import { NoteDeletedResponses1795800000200 } from '../../migrations/1795800000200-NoteDeletedResponses';
import { AddBackgroundFollowLeases1795847310000 } from '../../migrations/1795847310000-AddBackgroundFollowLeases';
import { AddIssuedTokenScope1795900000000 } from '../../migrations/1795900000000-AddIssuedTokenScope';
import { AddAuditEvents1795900000100 } from '../../migrations/1795900000100-AddAuditEvents';
import { AddEndUserIndexes1795900186599 } from '../../migrations/1795900186599-AddEndUserIndexes';
import { AddOrganizationPrivacy1796000000000 } from '../../migrations/1796000000000-AddOrganizationPrivacy';
import { AddUsageRollups1796000001000 } from '../../migrations/1796000001000-AddUsageRollups';
import { PartitionExchanges1796000001100 } from '../../migrations/1796000001100-PartitionExchanges';
import { AddExchangeCaptureMode1796100000000 } from '../../migrations/1796100000000-AddExchangeCaptureMode';
import { AddKeyPools1796400000001 } from '../../migrations/1796400000001-AddKeyPools';
import { KeepDailyUsage1796700000000 } from '../../migrations/1796700000000-KeepDailyUsage';
import { IndexAnalysisResultResponses1796700000100 } from '../../migrations/1796700000100-IndexAnalysisResultResponses';
import { IndexAnalysisResultCategories1796900000000 } from '../../migrations/1796900000000-IndexAnalysisResultCategories';
import { CoverPersonaJudgements1796900000100 } from '../../migrations/1796900000100-CoverPersonaJudgements';
import { JudgementsKnowTheirExchange1797000000000 } from '../../migrations/1797000000000-JudgementsKnowTheirExchange';
import { DailyUsageNamesUsers1797100000000 } from '../../migrations/1797100000000-DailyUsageNamesUsers';
import { ListJudgedByExchangeTime1797200000000 } from '../../migrations/1797200000000-ListJudgedByExchangeTime';
import { ListByStatus1797300000000 } from '../../migrations/1797300000000-ListByStatus';
import { ListByRareEndpoint1797400000000 } from '../../migrations/1797400000000-ListByRareEndpoint';
import { OpenCalls1797500000000 } from '../../migrations/1797500000000-OpenCalls';

/** Every migration, in order (listed explicitly, never globbed). */
export const MIGRATIONS = [
  InitialSchema1795488166900,
  AddAnalyticsIndexes1795490000000,
  AddLimits1795500000000,
  DropPersonaCreatedIndex1795510000000,
  WidenTokenCounters1795520000000,
  OrderCacheInvalidationsByTransaction1795520100000,
  AddAnalysisClaims1795520200000,
  RecordFailedAnalyses1795520300000,
  AddLimitCountersTake1795523400000,
  AddIssuedTokens1795777956120,
  RecordWholeApi1795800000000,
  BillObjectsOnce1795800000100,
  NoteDeletedResponses1795800000200,
  AddBackgroundFollowLeases1795847310000,
  AddIssuedTokenScope1795900000000,
  AddAuditEvents1795900000100,
  AddEndUserIndexes1795900186599,
  AddOrganizationPrivacy1796000000000,
  AddUsageRollups1796000001000,
  PartitionExchanges1796000001100,
  AddExchangeCaptureMode1796100000000,
  AddKeyPools1796400000001,
  KeepDailyUsage1796700000000,
  IndexAnalysisResultResponses1796700000100,
  IndexAnalysisResultCategories1796900000000,
  CoverPersonaJudgements1796900000100,
  JudgementsKnowTheirExchange1797000000000,
  DailyUsageNamesUsers1797100000000,
  ListJudgedByExchangeTime1797200000000,
  ListByStatus1797300000000,
  ListByRareEndpoint1797400000000,
  OpenCalls1797500000000,
];
